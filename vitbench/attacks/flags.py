"""The flags AutoAttack's reliability checks raise (no torch: tables and cards read them)."""

#: substrings of pyautoattack's check messages -> the flag vitbench stores
CHECK_FLAGS = {
    "randomized defense": "randomized-output",
    "probability distribution": "softmax-output",
    "dynamic defense": "dynamic-defense",
    "target classes": "too-many-target-classes",
    "not possible to use": "too-few-classes",
    "zero gradient": "zero-gradients",
    "Square Attack has decreased": "square-beat-white-box",
}
