//! A server that bad input cannot hurt: raw-byte clients, limits, expiry.
