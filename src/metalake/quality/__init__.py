"""Data quality: validations of dataset versions with Great Expectations or pandera suites."""

from metalake.quality.suites import Expectation, Suite, load_suite
from metalake.quality.validation import Quality, Validation

__all__ = ["Expectation", "Quality", "Suite", "Validation", "load_suite"]
