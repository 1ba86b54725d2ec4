"""The command-line interface: one module per subcommand (zoo, list, bench, leaderboard, train, demo)."""
