//! Template overrides for tests: the built-in chrony template with something appended.

/// A directory holding `chrony.conf.j2`: the built-in template followed by `extra`.
pub fn chrony_with(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let stock = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/chrony.conf.j2"
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("chrony.conf.j2"),
        format!("{stock}\n{extra}\n"),
    )
    .unwrap();
    dir
}
