//! tessera-http
