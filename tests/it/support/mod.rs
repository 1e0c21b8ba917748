//! Code shared by the fault-injection and concurrency tests: a TCP proxy that injects faults
//! ([`proxy`]), a minimal kobo hub for the XML-RPC source ([`hub`]), and the fixture hub with helpers to
//! read a scrape ([`fixture`]).

pub mod fixture;
pub mod hub;
pub mod kobo_wire;
pub mod proxy;
