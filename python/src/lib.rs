//! `batchstore._native`: the Python extension over the batchstore client.
//!
//! It moves Arrow data in and out through the Arrow C stream interface (no copies), runs every
//! call with the GIL released, and maps errors to Python exceptions. The public, documented API
//! is the pure-Python `batchstore` package around it.

mod errors;
mod native;
mod runtime;
mod values;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<native::NativeClient>()?;
    m.add_class::<native::NativeManifest>()?;
    m.add_class::<native::EarlyWrite>()?;
    m.add_function(wrap_pyfunction!(native::serve_home, m)?)?;
    m.add("Error", py.get_type::<errors::Error>())?;
    m.add("NotFound", py.get_type::<errors::NotFound>())?;
    m.add("AlreadyExists", py.get_type::<errors::AlreadyExists>())?;
    m.add("Conflict", py.get_type::<errors::Conflict>())?;
    m.add("SchemaMismatch", py.get_type::<errors::SchemaMismatch>())?;
    m.add("InvalidArgument", py.get_type::<errors::InvalidArgument>())?;
    m.add(
        "FailedPrecondition",
        py.get_type::<errors::FailedPrecondition>(),
    )?;
    m.add(
        "PermissionDenied",
        py.get_type::<errors::PermissionDenied>(),
    )?;
    m.add("Unavailable", py.get_type::<errors::Unavailable>())?;
    m.add("Unauthenticated", py.get_type::<errors::Unauthenticated>())?;
    m.add("DataError", py.get_type::<errors::DataError>())?;
    m.add("OutcomeUnknown", py.get_type::<errors::OutcomeUnknown>())?;
    Ok(())
}
