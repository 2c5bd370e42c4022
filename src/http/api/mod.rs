//! The JSON endpoints: carte-authenticated resources and forward authentication
//! ([`access`]), the grant API ([`grants`]), owners and controlled accounts ([`owners`]), the
//! registry's API ([`registry`]) and a witness's ([`witness`]).

pub mod access;
pub mod grants;
pub mod owners;
pub mod registry;
pub mod witness;
