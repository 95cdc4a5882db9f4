//! Handler tests of the master core: each asserts the exact outputs of one scenario.
