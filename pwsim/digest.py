"""sha256 and MD5 digests without OpenSSL.

``hashlib`` loads OpenSSL's libcrypto (~3.3 MiB resident on this project's machine, ~3 ms) for its
first digest, and a plain ``pwsim run`` needs digests only of a few small texts (pseudopotential
files, the FFTW wisdom's machine key). CPython's own built-in implementations (``_sha256`` up to
3.11, ``_sha2`` from 3.12, ``_md5``) give the same digests; ``hashlib`` is the fallback where a build
lacks them."""
from __future__ import annotations


def _builtin(names: tuple, attribute: str):
    for name in names:
        try:
            module = __import__(name)
        except ImportError:
            continue
        constructor = getattr(module, attribute, None)
        if constructor is not None:
            return constructor
    import hashlib

    return getattr(hashlib, attribute)


def sha256_hex(data: bytes) -> str:
    """sha256 of ``data`` as 64 hex digits (the same as ``hashlib.sha256(data).hexdigest()``)."""
    return _builtin(("_sha2", "_sha256"), "sha256")(data).hexdigest()


def md5_hex(data: bytes) -> str:
    """MD5 of ``data`` as 32 hex digits (the same as ``hashlib.md5(data).hexdigest()``)."""
    return _builtin(("_md5",), "md5")(data).hexdigest()
