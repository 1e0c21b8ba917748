//! The PostgreSQL source (to be written).
