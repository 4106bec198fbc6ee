"""Business and online KPIs: definitions, observations, and the impact of deployments on them."""

from metalake.kpis.kpis import Kpi, Kpis

__all__ = ["Kpi", "Kpis"]
