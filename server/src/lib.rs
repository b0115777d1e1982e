//! ropc server.
