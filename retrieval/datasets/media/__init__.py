"""The media demo catalogue: real pictures, music and sounds from Debian and PyPI packages."""
