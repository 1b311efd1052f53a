//! The rule for user-chosen file names, shared by the controller (which enforces
//! it) and the CLI (which checks names before connecting anywhere).

/// The longest file name accepted.
pub const MAX_NAME_BYTES: usize = 1024;

/// Checks a user-chosen file name: 1-[`MAX_NAME_BYTES`] bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("file name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("file name is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err("file name contains control characters".into());
    }
    Ok(())
}
