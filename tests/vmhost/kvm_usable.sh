# Sourced (bash): kvm_usable is true where /dev/kvm is a character device that opens
# read-write. The -c test comes first because `<>` would create a plain file where none
# exists; -r/-w alone would pass for a plain file or a device whose module is missing.
kvm_usable() { [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; }
