//! tessera-egress
