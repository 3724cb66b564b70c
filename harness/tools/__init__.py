"""Tools built on the harness's targets that are not part of checking kernels (bench)."""
