//! Repository automation (being written).
fn main() {}
