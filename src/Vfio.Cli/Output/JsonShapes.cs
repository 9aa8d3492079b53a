using System.Text.Json.Serialization;

namespace Vfio.Cli.Output;

// The documents `--json` prints. They are the command's interface to scripts: README.md in this folder documents each
// one, and a change that removes or renames a field is a breaking change. Fields are added, never repurposed.
// PCI IDs are lowercase hex strings without "0x" ("1b36", class "010802"), as lspci -n prints them; sizes, offsets
// and counts are JSON numbers in bytes or units; absent values are null, never omitted.

/// <summary><c>vfio list --json</c>.</summary>
internal sealed record DeviceListJson(IReadOnlyList<DeviceJson> Devices);

/// <summary>One PCI function.</summary>
internal sealed record DeviceJson(
    string Address,
    string VendorId,
    string DeviceId,
    string? VendorName,
    string? DeviceName,
    string SubsystemVendorId,
    string SubsystemDeviceId,
    string ClassCode,
    string ClassName,
    string Revision,
    string? Driver,
    string? DriverOverride,
    int? IommuGroup,
    bool NoIommu,
    int? NumaNode,
    string? VfioDevice);

/// <summary><c>vfio bind --json</c> and <c>vfio unbind --json</c>: one entry per device, in argument order.</summary>
internal sealed record BindingListJson(IReadOnlyList<BindingJson> Devices);

/// <summary>
/// What happened to one device. <c>Action</c> is "bound", "unbound" or "unchanged". <c>PersistRule</c> is the udev
/// rule <c>--persist</c> wrote (bind) or removed (unbind), null without <c>--persist</c> or when there was none to
/// remove. <c>Forced</c> lists the uses <c>bind --force</c> overrode (bind: empty when none; unbind: null).
/// </summary>
internal sealed record BindingJson(
    string Address,
    string Action,
    string? PreviousDriver,
    string? Driver,
    int? IommuGroup,
    bool NoIommu,
    string? GroupDevicePath,
    string? PersistRule = null,
    IReadOnlyList<string>? Forced = null);

/// <summary><c>vfio noiommu status --json</c> and <c>vfio noiommu enable --unsafe --json</c>.</summary>
internal sealed record NoIommuJson(
    bool VfioModuleLoaded,
    bool ParameterPresent,
    bool? Enabled,
    bool Supported,
    bool VfioContainerDevice,
    bool IommufdDevice,
    bool VfioPciLoaded,
    IReadOnlyList<int> NoIommuGroups,
    string Summary,
    bool? Changed);

/// <summary><c>vfio hugepages status --json</c>.</summary>
internal sealed record HugePagesJson(ulong? DefaultPageSize, IReadOnlyList<HugePagePoolJson> Pools, IReadOnlyList<HugetlbfsMountJson> Mounts);

/// <summary>One hugepage pool; <c>Mounts</c> are the hugetlbfs mount points that use its page size.</summary>
internal sealed record HugePagePoolJson(
    ulong PageSize,
    string Size,
    long Total,
    long Free,
    long Reserved,
    long Surplus,
    long Available,
    IReadOnlyList<string> Mounts);

/// <summary>A mounted hugetlbfs.</summary>
internal sealed record HugetlbfsMountJson(string MountPoint, ulong PageSize);

/// <summary><c>vfio hugepages reserve --json</c>: <c>Granted</c> is the pool size the kernel reports afterwards; <c>Node</c> the NUMA node with <c>--node</c>, else null.</summary>
internal sealed record HugePageReservationJson(ulong PageSize, string Size, int Requested, long Granted, bool Complete, int? Node);

/// <summary>
/// <c>vfio info --json</c>. <c>Container</c> says what serves the VFIO container of a device opened through its
/// group: "vfio" (the VFIO container proper) or "iommufd" (iommufd's emulation, CONFIG_IOMMUFD_VFIO_CONTAINER);
/// null for a device opened through its cdev or over vfio-user. <c>NumaNode</c> is sysfs' <c>numa_node</c>, null when the
/// kernel reports none (-1, a single-node host) or the device is not in sysfs (vfio-user).
/// </summary>
internal sealed record DeviceInfoJson(
    string Address,
    string Mode,
    bool DmaIsolated,
    string VendorId,
    string DeviceId,
    string ClassCode,
    IReadOnlyList<string> Flags,
    bool CanReset,
    IReadOnlyList<RegionJson> Regions,
    IReadOnlyList<IrqJson> Irqs,
    IReadOnlyList<CapabilityJson> Capabilities,
    IReadOnlyList<CapabilityJson> ExtendedCapabilities,
    string? Container = null,
    string? ErrorReporting = null,
    AerJson? Aer = null,
    int? NumaNode = null);

/// <summary>
/// The AER capability's registers (PCIe Base 6.0 §7.8.4) with the spec's bit names: what is logged, masked and of
/// fatal severity, the First Error Pointer and the Header Log DWs (hex).
/// </summary>
internal sealed record AerJson(
    int Offset,
    int Version,
    IReadOnlyList<string> UncorrectableStatus,
    IReadOnlyList<string> UncorrectableMask,
    IReadOnlyList<string> UncorrectableFatal,
    IReadOnlyList<string> CorrectableStatus,
    IReadOnlyList<string> CorrectableMask,
    int FirstErrorPointer,
    IReadOnlyList<string> HeaderLog);

/// <summary>One VFIO region; <c>Error</c> is set (and the rest zero) when the kernel would not describe it.</summary>
internal sealed record RegionJson(
    int Index,
    string Name,
    ulong Size,
    ulong Offset,
    IReadOnlyList<string> Flags,
    IReadOnlyList<SparseAreaJson>? SparseAreas,
    bool MsixMappable,
    string? Type,
    string? Error);

/// <summary>A mmap-able part of a region, relative to the region's start.</summary>
internal sealed record SparseAreaJson(ulong Offset, ulong Size);

/// <summary>One VFIO interrupt index.</summary>
internal sealed record IrqJson(int Index, string Name, int Count, IReadOnlyList<string> Flags, string? Error);

/// <summary>A PCI capability in config space; <c>Version</c> is null for standard capabilities.</summary>
internal sealed record CapabilityJson(string Id, string Name, int Offset, int? Version);

/// <summary><c>vfio nvme identify --json</c>: Identify Controller and the active namespaces.</summary>
internal sealed record NvmeIdentifyJson(
    string Address,
    string Mode,
    bool DmaIsolated,
    string VendorId,
    string Model,
    string Serial,
    string Firmware,
    string Version,
    int ControllerId,
    int MaxTransferBytes,
    int MaxQueueEntries,
    bool VolatileWriteCache,
    IReadOnlyList<string> OptionalCommands,
    string? SubsystemNqn,
    IReadOnlyList<NvmeNamespaceJson> Namespaces);

/// <summary>One active namespace; sizes in blocks except <c>SizeBytes</c>.</summary>
internal sealed record NvmeNamespaceJson(uint Nsid, int BlockSize, ulong Blocks, ulong SizeBytes, ulong CapacityBlocks, ulong UtilizationBlocks);

/// <summary><c>vfio nvme read --json</c>: <c>Out</c> is the file written (--out), <c>Hex</c> the data (--hex).</summary>
internal sealed record NvmeReadJson(string Address, uint Nsid, ulong Lba, int Blocks, int BlockSize, int Bytes, string Sha256, string? Out, string? Hex);

/// <summary><c>vfio nvme write --json</c>: <c>Verified</c> is true with --verify (a mismatch is an error), else null.</summary>
internal sealed record NvmeWriteJson(string Address, uint Nsid, ulong Lba, int Blocks, int BlockSize, int Bytes, string Source, string Sha256,
    bool Flushed, bool? Verified);

/// <summary>
/// <c>vfio nvme perf --json</c>. Counts and rates cover the timed window (after the ramp); <c>errors</c> and
/// <c>mismatches</c> count from the first I/O on. Latencies in microseconds, per-I/O figures and latencies null
/// when no I/O completed; doorbells per I/O null when the API does not count them. <c>AllocatedBytesPerIo</c>: managed
/// bytes the whole process allocated in the window per I/O; <c>QueueThreadAllocatedBytesPerIo</c>: those the queues'
/// own threads allocated (null when the API does not run a queue on one thread). <c>AllocCheckReads</c> and <c>AllocCheckBytesPerRead</c>:
/// the --alloc-check measurement, null when it was not asked for or the run had errors or mismatches.
/// </summary>
internal sealed record NvmePerfJson(
    string Address,
    string Mode,
    bool DmaIsolated,
    uint Nsid,
    string Api,
    string Workload,
    int ReadPercent,
    int IoBytes,
    int QueueDepth,
    int Queues,
    double Seconds,
    double RampSeconds,
    bool Verify,
    ulong SpanBytes,
    long Ios,
    long Reads,
    long Writes,
    long Errors,
    long Mismatches,
    double Iops,
    double MbPerSecond,
    double? P50Us,
    double? P90Us,
    double? P99Us,
    double? P999Us,
    double? P9999Us,
    double? MaxUs,
    double? AllocatedBytesPerIo,
    double? QueueThreadAllocatedBytesPerIo,
    double? CpuSecondsPerMillionIos,
    double? SubmissionDoorbellsPerIo,
    double? CompletionDoorbellsPerIo,
    IReadOnlyList<long> QueueIos,
    string? FirstError,
    string? FirstMismatch,
    int? AllocCheckReads,
    double? AllocCheckBytesPerRead);

/// <summary>
/// <c>vfio net pktgen --json</c>: frames sent on one port. <c>Sent</c> counts frames the device finished sending;
/// <c>Complete</c> is false when the time limit ended the run first.
/// </summary>
internal sealed record NetPktgenJson(string Port, string Mode, bool DmaIsolated, string? Mac, long Requested, long Sent, bool Complete, int FrameSize,
    int Burst, double Seconds, double Mpps, string Driver);

/// <summary>
/// <c>vfio net fwd --json</c>: <c>Packets</c> is both directions together; <c>Mpps</c> the overall rate and
/// <c>SteadyMpps</c> the rate after the first <c>WarmupSeconds</c>; <c>DriverA</c>/<c>DriverB</c> the drivers the ports'
/// PCI IDs chose, <c>QueuePairs</c> the pairs forwarded; <c>TxFirstPackets</c> the frames the tx-first bursts put in
/// flight, <c>PoolBuffers</c> the shared pool's size, <c>Doorbells</c> the notifications both drivers wrote while
/// forwarding (0 for a driver that does not count them) and <c>DoorbellsPerPacket</c> those per forwarded packet.
/// </summary>
internal sealed record NetFwdJson(string PortA, string PortB, string Mode, bool DmaIsolated, int Burst, double Seconds, long Packets,
    long AToB, long BToA, long Dropped, double Mpps, double SteadyMpps, long Rounds, double WarmupSeconds, string DriverA, string DriverB, int QueuePairs,
    long TxFirstPackets, int PoolBuffers, long Doorbells, double DoorbellsPerPacket);

/// <summary>
/// <c>vfio net stats --json</c>: one port as its driver reports it, after receiving for <c>Seconds</c>. <c>Queues</c>
/// is empty for a driver that counts per port only; <c>SpeedMbps</c> and <c>FullDuplex</c> are null when the device
/// reports none.
/// </summary>
internal sealed record NetStatsJson(string Port, string Mode, string Driver, string? Mac, bool LinkUp, int? SpeedMbps, bool? FullDuplex,
    int QueuePairs, NetRssJson Rss, double Seconds, NetCountersJson Rx, NetCountersJson Tx, IReadOnlyList<NetQueueJson> Queues);

/// <summary>A port's RSS: <c>Supported</c> false (and zero sizes) when it has none.</summary>
internal sealed record NetRssJson(bool Supported, int KeySize, int TableSize, string? Hash);

/// <summary>One direction's counters.</summary>
internal sealed record NetCountersJson(long Packets, long Bytes, long Drops, long Errors);

/// <summary>One queue pair's counters.</summary>
internal sealed record NetQueueJson(int Queue, NetCountersJson Rx, NetCountersJson Tx);

/// <summary>
/// <c>vfio net tap --json</c>: frames moved between the port and the TAP interface until the command was stopped.
/// <c>Capture</c> is null without <c>--capture</c>. With <c>--offload</c>, <c>FromKernelSegmented</c> counts the TCP
/// segments of up to 64 KiB the kernel handed over and the bridge cut into MTU-sized frames (counted in <c>FromKernel</c>),
/// <c>FromKernelMalformed</c> the frames whose virtio_net_hdr asked for what the bridge does not do, <c>ToKernelCoalesced</c>
/// the packets of two or more received TCP segments joined for the kernel (software GRO; each segment counts in <c>ToKernel</c>).
/// When the port's device does TCP segmentation itself (virtio-net HOST_TSO4/6 and GUEST_TSO4/6 negotiated, listed in
/// <c>PortOffloads</c>), <c>FromKernelWhole</c> counts the kernel's segments handed to the port whole and
/// <c>ToKernelWhole</c> the packets the device joined, written to the kernel as one GSO packet each.
/// </summary>
internal sealed record NetTapJson(string Port, string Tap, string? Mac, int Mtu, double Seconds, long ToKernel, long ToKernelDropped,
    long FromKernel, long FromKernelDropped, NetCaptureJson? Capture, bool Offload = false, long FromKernelSegmented = 0, long FromKernelMalformed = 0, long ToKernelCoalesced = 0,
    string? PortOffloads = null, long FromKernelWhole = 0, long ToKernelWhole = 0);

/// <summary>
/// <c>vfio net capture --json</c> (and the capture of <c>vfio net tap --capture</c>): <c>Captured</c> frames were
/// copied, <c>Dropped</c> found the queue to the file full, <c>Written</c> records are in the file.
/// </summary>
internal sealed record NetCaptureJson(string Port, string File, int SnapLength, long Captured, long Dropped, long Written, double Seconds);

/// <summary>
/// <c>vfio serve edu|nvme|virtio-net --json</c>: one document when listening (<c>State</c> "listening", <c>Clients</c>
/// null) and one when stopped ("stopped", with the clients served). <c>PeerSocket</c>: the second port's socket of a
/// virtio-net pair, else null. Block size, blocks and size are null for devices without storage.
/// </summary>
internal sealed record ServeJson(string State, string Device, string VendorId, string DeviceId, string Socket, string? PeerSocket,
    int? BlockSize, ulong? Blocks, ulong? SizeBytes, int? Clients);

/// <summary><c>vfio doctor --json</c>: <c>Ready</c> is true when no check failed (warnings allowed).</summary>
internal sealed record DoctorJson(bool Ready, IReadOnlyList<DoctorCheckJson> Checks);

/// <summary>One check: a stable id, a title, "ok", "warning" or "failed", what was found, and the fix (null when ok).</summary>
internal sealed record DoctorCheckJson(string Id, string Title, string Status, string Detail, string? Fix);

/// <summary>What a failed command prints on standard output with <c>--json</c> (the message also goes to stderr).</summary>
internal sealed record ErrorDocumentJson(ErrorJson Error);

/// <summary>The error: the exit code, the exception's kind, the message, and the device when there is one.</summary>
internal sealed record ErrorJson(int ExitCode, string Kind, string Message, string? Device);

/// <summary>Source-generated serialization for every document above, so that the command stays AOT- and trim-clean.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(DeviceListJson))]
[JsonSerializable(typeof(BindingListJson))]
[JsonSerializable(typeof(NoIommuJson))]
[JsonSerializable(typeof(HugePagesJson))]
[JsonSerializable(typeof(HugePageReservationJson))]
[JsonSerializable(typeof(DeviceInfoJson))]
[JsonSerializable(typeof(NvmeIdentifyJson))]
[JsonSerializable(typeof(NvmeReadJson))]
[JsonSerializable(typeof(NvmeWriteJson))]
[JsonSerializable(typeof(NvmePerfJson))]
[JsonSerializable(typeof(NetPktgenJson))]
[JsonSerializable(typeof(NetFwdJson))]
[JsonSerializable(typeof(NetStatsJson))]
[JsonSerializable(typeof(NetTapJson))]
[JsonSerializable(typeof(NetCaptureJson))]
[JsonSerializable(typeof(ServeJson))]
[JsonSerializable(typeof(DoctorJson))]
[JsonSerializable(typeof(ErrorDocumentJson))]
internal sealed partial class CliJson : JsonSerializerContext
{
    /// <summary>
    /// The context the command writes with: like <see cref="Default"/>, but quotes and apostrophes are written as
    /// themselves, not as \u0022-style escapes meant for HTML; the output is for scripts and people.
    /// </summary>
    public static CliJson Output { get; } = new(new System.Text.Json.JsonSerializerOptions
    {
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
