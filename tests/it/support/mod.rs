//! Code shared by the fault-injection and concurrency tests (the fault proxy is `kobo_testkit::proxy`): the
//! fixture hub served over XML-RPC ([`hub`]) and in kobo's wire format ([`kobo_wire`]), and the fixture hub
//! with helpers to read a scrape ([`fixture`]).

pub mod fake;
pub mod fixture;
pub mod hub;
pub mod kobo_wire;
