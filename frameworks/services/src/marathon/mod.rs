//! Marathon's `/v2` JSON: DTOs in Marathon's names and shapes, parsed and validated into
//! [`crate::model`] types, and rendered back. A compatibility fix touches only this module.
