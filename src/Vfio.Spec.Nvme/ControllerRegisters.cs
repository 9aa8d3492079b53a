namespace Vfio.Spec.Nvme;

/// <summary>
/// Offsets of the controller registers in BAR0 (NVMe Base 1.4 §3.1, "Register Definition"; NVMe Base 2.0
/// §3.1.4 calls them controller properties). All are little-endian; 64-bit registers may be accessed as one
/// 64-bit access.
/// </summary>
public static class ControllerRegister
{
    /// <summary>CAP, Controller Capabilities (64 bits).</summary>
    public const ulong Cap = 0x00;
    /// <summary>VS, Version (32 bits).</summary>
    public const ulong Vs = 0x08;
    /// <summary>INTMS, Interrupt Mask Set (pin-based and MSI only; ignored with MSI-X).</summary>
    public const ulong Intms = 0x0C;
    /// <summary>INTMC, Interrupt Mask Clear.</summary>
    public const ulong Intmc = 0x10;
    /// <summary>CC, Controller Configuration (32 bits).</summary>
    public const ulong Cc = 0x14;
    /// <summary>CSTS, Controller Status (32 bits).</summary>
    public const ulong Csts = 0x1C;
    /// <summary>AQA, Admin Queue Attributes (32 bits).</summary>
    public const ulong Aqa = 0x24;
    /// <summary>ASQ, Admin Submission Queue base address (64 bits).</summary>
    public const ulong Asq = 0x28;
    /// <summary>ACQ, Admin Completion Queue base address (64 bits).</summary>
    public const ulong Acq = 0x30;
    /// <summary>Start of the doorbell registers (NVMe 1.4 §3.1.24).</summary>
    public const ulong DoorbellBase = 0x1000;

    /// <summary>
    /// Offset of submission queue <paramref name="queueId"/>'s tail doorbell: <c>0x1000 + (2y * (4 &lt;&lt; CAP.DSTRD))</c>
    /// (NVMe 1.4 §3.1.24).
    /// </summary>
    public static ulong SubmissionTailDoorbell(int queueId, int doorbellStride) =>
        DoorbellBase + (ulong)(2 * queueId) * (4UL << doorbellStride);

    /// <summary>
    /// Offset of completion queue <paramref name="queueId"/>'s head doorbell: <c>0x1000 + ((2y + 1) * (4 &lt;&lt; CAP.DSTRD))</c>
    /// (NVMe 1.4 §3.1.25).
    /// </summary>
    public static ulong CompletionHeadDoorbell(int queueId, int doorbellStride) =>
        DoorbellBase + (ulong)(2 * queueId + 1) * (4UL << doorbellStride);
}

/// <summary>The CAP register decoded (NVMe 1.4 §3.1.1).</summary>
/// <param name="Raw">The 64-bit value as read.</param>
public readonly record struct ControllerCapabilities(ulong Raw)
{
    /// <summary>MQES + 1: the most entries an I/O queue may have (MQES is 0's based, bits 15:0).</summary>
    public int MaxQueueEntries => (int)(Raw & 0xFFFF) + 1;

    /// <summary>CQR, bit 16: I/O queues must be physically contiguous.</summary>
    public bool ContiguousQueuesRequired => (Raw & (1UL << 16)) != 0;

    /// <summary>TO, bits 31:24: worst-case time for CSTS.RDY to follow CC.EN, in 500 ms units.</summary>
    public int TimeoutUnits => (int)((Raw >> 24) & 0xFF);

    /// <summary>The ready timeout as a time span (TO × 500 ms).</summary>
    public TimeSpan ReadyTimeout => TimeSpan.FromMilliseconds(500.0 * TimeoutUnits);

    /// <summary>DSTRD, bits 35:32: doorbells are <c>4 &lt;&lt; DSTRD</c> bytes apart.</summary>
    public int DoorbellStride => (int)((Raw >> 32) & 0xF);

    /// <summary>NSSRS, bit 36: NVM subsystem reset supported.</summary>
    public bool SubsystemResetSupported => (Raw & (1UL << 36)) != 0;

    /// <summary>CSS, bits 44:37: command sets supported; bit 0 of the field is the NVM command set.</summary>
    public int CommandSetsSupported => (int)((Raw >> 37) & 0xFF);

    /// <summary>True when the NVM command set is supported (CSS bit 0).</summary>
    public bool SupportsNvmCommandSet => (CommandSetsSupported & 1) != 0;

    /// <summary>
    /// True when the controller supports one or more I/O command sets (CSS bit 6, NVMe 2.0 Figure 36): it answers
    /// Identify CNS 06h and 1Ch, and CC.CSS may select them.
    /// </summary>
    public bool SupportsIoCommandSets => (CommandSetsSupported & (1 << 6)) != 0;

    /// <summary>MPSMIN, bits 51:48: smallest memory page size is <c>2^(12 + MPSMIN)</c>.</summary>
    public int MinPageShift => 12 + (int)((Raw >> 48) & 0xF);

    /// <summary>MPSMAX, bits 55:52: largest memory page size is <c>2^(12 + MPSMAX)</c>.</summary>
    public int MaxPageShift => 12 + (int)((Raw >> 52) & 0xF);

    /// <inheritdoc />
    public override string ToString() =>
        $"CAP 0x{Raw:x16} (MQES+1 {MaxQueueEntries}, CQR {ContiguousQueuesRequired}, TO {ReadyTimeout.TotalMilliseconds} ms, " +
        $"DSTRD {DoorbellStride}, pages 2^{MinPageShift}..2^{MaxPageShift})";
}

/// <summary>The VS register decoded (NVMe 1.4 §3.1.2).</summary>
/// <param name="Raw">The 32-bit value.</param>
public readonly record struct NvmeVersion(uint Raw)
{
    /// <summary>Major version, bits 31:16.</summary>
    public int Major => (int)(Raw >> 16);
    /// <summary>Minor version, bits 15:8.</summary>
    public int Minor => (int)((Raw >> 8) & 0xFF);
    /// <summary>Tertiary version, bits 7:0.</summary>
    public int Tertiary => (int)(Raw & 0xFF);
    /// <inheritdoc />
    public override string ToString() => $"{Major}.{Minor}.{Tertiary}";
}

/// <summary>CC.SHN values (NVMe 1.4 §3.1.5, bits 15:14).</summary>
public enum ShutdownNotification
{
    /// <summary>No notification.</summary>
    None = 0,
    /// <summary>Normal shutdown: the controller finishes what it has and flushes.</summary>
    Normal = 1,
    /// <summary>Abrupt shutdown.</summary>
    Abrupt = 2,
}

/// <summary>CSTS.SHST values (NVMe 1.4 §3.1.6, bits 3:2).</summary>
public enum ShutdownStatus
{
    /// <summary>Normal operation, no shutdown requested.</summary>
    Normal = 0,
    /// <summary>Shutdown processing under way.</summary>
    Occurring = 1,
    /// <summary>Shutdown processing complete.</summary>
    Complete = 2,
}

/// <summary>Encoding of CC and decoding of CSTS and AQA (NVMe 1.4 §3.1.5, §3.1.6, §3.1.8).</summary>
public static class ControllerConfiguration
{
    /// <summary>CC.EN, bit 0.</summary>
    public const uint Enable = 1;

    /// <summary>
    /// The CC value that enables the controller: NVM command set (CSS 000b), memory page size
    /// <c>2^(12 + MPS)</c> (bits 10:7), round-robin arbitration (AMS 000b), no shutdown notification,
    /// I/O SQ entries 2^6 = 64 bytes (IOSQES, bits 19:16), I/O CQ entries 2^4 = 16 bytes (IOCQES, bits 23:20).
    /// </summary>
    public static uint Encode(bool enable, int pageShift, ShutdownNotification shutdown = ShutdownNotification.None)
    {
        if (pageShift < 12 || pageShift > 27)
        {
            throw new ArgumentOutOfRangeException(nameof(pageShift), pageShift, "memory page size is 2^12..2^27 bytes");
        }
        return (enable ? Enable : 0)
            | (uint)(pageShift - 12) << 7
            | (uint)shutdown << 14
            | 6u << 16
            | 4u << 20;
    }

    /// <summary>Replaces CC.SHN in <paramref name="cc"/>.</summary>
    public static uint WithShutdown(uint cc, ShutdownNotification shutdown) => (cc & ~(3u << 14)) | (uint)shutdown << 14;

    /// <summary>CSTS.RDY, bit 0.</summary>
    public static bool IsReady(uint csts) => (csts & 1) != 0;

    /// <summary>CSTS.CFS, bit 1: Controller Fatal Status.</summary>
    public static bool IsFatal(uint csts) => (csts & 2) != 0;

    /// <summary>CSTS.SHST, bits 3:2.</summary>
    public static ShutdownStatus GetShutdownStatus(uint csts) => (ShutdownStatus)((csts >> 2) & 3);

    /// <summary>
    /// AQA: admin SQ size in bits 11:0 and admin CQ size in bits 27:16, both 0's based, at most 4096 entries
    /// (NVMe 1.4 §3.1.8).
    /// </summary>
    public static uint EncodeAdminQueueAttributes(int submissionEntries, int completionEntries)
    {
        if (submissionEntries is < 2 or > 4096) { throw new ArgumentOutOfRangeException(nameof(submissionEntries), submissionEntries, "admin queues hold 2..4096 entries"); }
        if (completionEntries is < 2 or > 4096) { throw new ArgumentOutOfRangeException(nameof(completionEntries), completionEntries, "admin queues hold 2..4096 entries"); }
        return (uint)(submissionEntries - 1) | (uint)(completionEntries - 1) << 16;
    }
}
