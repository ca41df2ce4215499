"""Number formats shared by the report's plots and report.md."""


def pct(fraction: float) -> str:
    """Weights remaining as a percentage: 0.035 -> '3.5%'."""
    return f"{100 * fraction:.3g}%"


def acc(fraction: float) -> str:
    """An accuracy as a percentage with two decimals: 0.9123 -> '91.23%'."""
    return f"{100 * fraction:.2f}%"
