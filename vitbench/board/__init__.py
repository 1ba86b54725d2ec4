"""Leaderboards: tables computed from the store, reference leaderboards, comparisons, plots and cards."""
