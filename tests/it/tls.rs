//! TLS on both ends: transfers, refused certificates, mixed plaintext/TLS.
