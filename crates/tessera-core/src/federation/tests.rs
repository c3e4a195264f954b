//! Unit tests of the upstream flow with a scripted transport.
