"""Data quality: validations of dataset versions with Great Expectations or pandera suites."""
