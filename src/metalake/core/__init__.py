"""The core: specs, contracts, Delta storage, SQL and time travel. It knows no domain: no runs, models or KPIs."""
