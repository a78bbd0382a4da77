"""Tools for testing the package: :mod:`~minitransformer.testing.strict`, a CPU stand-in for
CuPy that refuses to mix host and device arrays, so that such mistakes fail in CI."""
