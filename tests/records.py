"""Records that tests keep while they check (the worst error seen per function or layer),
printed as a table at the end of a test module by ``pytest -s``."""


def print_worst(title: str, worst: dict, fmt: str = ".2e") -> None:
    """Print ``worst`` (name -> number) under ``title``, one aligned row per name."""
    if worst:
        width = max(map(len, worst))
        print(f"\n{title}:")
        for name, value in worst.items():
            print(f"  {name:<{width}}  {value:{fmt}}")
