//! Linux capability names, as the container runtime and SCCs spell them
//! (without the `CAP_` prefix).

/// Every capability Linux defines (capability(7), up to CHECKPOINT_RESTORE).
pub const KNOWN_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// [`KNOWN_CAPABILITIES`] as a CEL list literal, for the CRD's validation rules.
pub const KNOWN_CAPABILITIES_CEL_LIST: &str = "['AUDIT_CONTROL','AUDIT_READ','AUDIT_WRITE','BLOCK_SUSPEND','BPF','CHECKPOINT_RESTORE','CHOWN','DAC_OVERRIDE','DAC_READ_SEARCH','FOWNER','FSETID','IPC_LOCK','IPC_OWNER','KILL','LEASE','LINUX_IMMUTABLE','MAC_ADMIN','MAC_OVERRIDE','MKNOD','NET_ADMIN','NET_BIND_SERVICE','NET_BROADCAST','NET_RAW','PERFMON','SETFCAP','SETGID','SETPCAP','SETUID','SYSLOG','SYS_ADMIN','SYS_BOOT','SYS_CHROOT','SYS_MODULE','SYS_NICE','SYS_PACCT','SYS_PTRACE','SYS_RAWIO','SYS_RESOURCE','SYS_TIME','SYS_TTY_CONFIG','WAKE_ALARM']";

/// Whether `name` is a Linux capability name as SCCs spell it.
pub fn is_known(name: &str) -> bool {
    KNOWN_CAPABILITIES.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_capabilities_are_sorted_so_binary_search_works() {
        let mut sorted = KNOWN_CAPABILITIES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, KNOWN_CAPABILITIES);
    }

    #[test]
    fn cel_list_matches_the_rust_list() {
        let from_cel: Vec<&str> = KNOWN_CAPABILITIES_CEL_LIST
            .trim_matches(['[', ']'])
            .split(',')
            .map(|c| c.trim_matches('\''))
            .collect();
        assert_eq!(from_cel, KNOWN_CAPABILITIES);
    }

    #[test]
    fn recognises_capabilities_without_prefix_only() {
        assert!(is_known("SYS_ADMIN"));
        assert!(!is_known("CAP_SYS_ADMIN"));
        assert!(!is_known("sys_admin"));
        assert!(!is_known("ALL"));
    }
}
