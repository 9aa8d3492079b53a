namespace Vfio.Host;

/// <summary>
/// Linux capabilities (include/uapi/linux/capability.h), numbered as the kernel numbers them: the value is the bit
/// in the CapEff mask of /proc/PID/status. The ones this library asks for are documented with why.
/// </summary>
public enum LinuxCapability
{
    /// <summary>CAP_CHOWN.</summary>
    Chown = 0,
    /// <summary>CAP_DAC_OVERRIDE: bypass file permission checks, e.g. to write root-owned sysfs attributes.</summary>
    DacOverride = 1,
    /// <summary>CAP_DAC_READ_SEARCH.</summary>
    DacReadSearch = 2,
    /// <summary>CAP_FOWNER.</summary>
    FOwner = 3,
    /// <summary>CAP_FSETID.</summary>
    FSetId = 4,
    /// <summary>CAP_KILL.</summary>
    Kill = 5,
    /// <summary>CAP_SETGID.</summary>
    SetGid = 6,
    /// <summary>CAP_SETUID.</summary>
    SetUid = 7,
    /// <summary>CAP_SETPCAP.</summary>
    SetPCap = 8,
    /// <summary>CAP_LINUX_IMMUTABLE.</summary>
    LinuxImmutable = 9,
    /// <summary>CAP_NET_BIND_SERVICE.</summary>
    NetBindService = 10,
    /// <summary>CAP_NET_BROADCAST.</summary>
    NetBroadcast = 11,
    /// <summary>CAP_NET_ADMIN.</summary>
    NetAdmin = 12,
    /// <summary>CAP_NET_RAW.</summary>
    NetRaw = 13,
    /// <summary>CAP_IPC_LOCK: lock memory beyond RLIMIT_MEMLOCK, which pinned DMA buffers count against.</summary>
    IpcLock = 14,
    /// <summary>CAP_IPC_OWNER.</summary>
    IpcOwner = 15,
    /// <summary>CAP_SYS_MODULE.</summary>
    SysModule = 16,
    /// <summary>CAP_SYS_RAWIO: VFIO requires it to open a No-IOMMU group (vfio_noiommu_open in drivers/vfio/vfio_main.c).</summary>
    SysRawIo = 17,
    /// <summary>CAP_SYS_CHROOT.</summary>
    SysChroot = 18,
    /// <summary>CAP_SYS_PTRACE.</summary>
    SysPtrace = 19,
    /// <summary>CAP_SYS_PACCT.</summary>
    SysPacct = 20,
    /// <summary>CAP_SYS_ADMIN: needed for /proc/self/pagemap to show page frame numbers (the bus addresses of
    /// No-IOMMU DMA), which read as zero without it.</summary>
    SysAdmin = 21,
    /// <summary>CAP_SYS_BOOT.</summary>
    SysBoot = 22,
    /// <summary>CAP_SYS_NICE.</summary>
    SysNice = 23,
    /// <summary>CAP_SYS_RESOURCE.</summary>
    SysResource = 24,
    /// <summary>CAP_SYS_TIME.</summary>
    SysTime = 25,
    /// <summary>CAP_SYS_TTY_CONFIG.</summary>
    SysTtyConfig = 26,
    /// <summary>CAP_MKNOD.</summary>
    Mknod = 27,
    /// <summary>CAP_LEASE.</summary>
    Lease = 28,
    /// <summary>CAP_AUDIT_WRITE.</summary>
    AuditWrite = 29,
    /// <summary>CAP_AUDIT_CONTROL.</summary>
    AuditControl = 30,
    /// <summary>CAP_SETFCAP.</summary>
    SetFCap = 31,
    /// <summary>CAP_MAC_OVERRIDE.</summary>
    MacOverride = 32,
    /// <summary>CAP_MAC_ADMIN.</summary>
    MacAdmin = 33,
    /// <summary>CAP_SYSLOG.</summary>
    Syslog = 34,
    /// <summary>CAP_WAKE_ALARM.</summary>
    WakeAlarm = 35,
    /// <summary>CAP_BLOCK_SUSPEND.</summary>
    BlockSuspend = 36,
    /// <summary>CAP_AUDIT_READ.</summary>
    AuditRead = 37,
    /// <summary>CAP_PERFMON.</summary>
    Perfmon = 38,
    /// <summary>CAP_BPF.</summary>
    Bpf = 39,
    /// <summary>CAP_CHECKPOINT_RESTORE.</summary>
    CheckpointRestore = 40,
}

/// <summary>Kernel names of <see cref="LinuxCapability"/> values.</summary>
public static class LinuxCapabilityExtensions
{
    private static readonly string[] KernelNames =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    /// <summary>The name capability.h gives the capability, e.g. <c>CAP_SYS_RAWIO</c>; "CAP_N" for a number it lacks.</summary>
    public static string KernelName(this LinuxCapability capability) =>
        (uint)capability < (uint)KernelNames.Length
            ? KernelNames[(int)capability]
            : "CAP_" + ((int)capability).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
