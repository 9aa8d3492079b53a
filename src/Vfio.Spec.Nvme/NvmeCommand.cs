using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Spec.Nvme;

/// <summary>Admin command opcodes (NVMe 1.4 §5, Figure 139).</summary>
public enum AdminOpcode : byte
{
    /// <summary>Delete I/O Submission Queue.</summary>
    DeleteIoSubmissionQueue = 0x00,
    /// <summary>Create I/O Submission Queue.</summary>
    CreateIoSubmissionQueue = 0x01,
    /// <summary>Get Log Page.</summary>
    GetLogPage = 0x02,
    /// <summary>Delete I/O Completion Queue.</summary>
    DeleteIoCompletionQueue = 0x04,
    /// <summary>Create I/O Completion Queue.</summary>
    CreateIoCompletionQueue = 0x05,
    /// <summary>Identify.</summary>
    Identify = 0x06,
    /// <summary>Abort.</summary>
    Abort = 0x08,
    /// <summary>Set Features.</summary>
    SetFeatures = 0x09,
    /// <summary>Get Features.</summary>
    GetFeatures = 0x0A,
    /// <summary>Firmware Commit (§5.11).</summary>
    FirmwareCommit = 0x10,
    /// <summary>Firmware Image Download (§5.12).</summary>
    FirmwareImageDownload = 0x11,
    /// <summary>Namespace Management (§5.20).</summary>
    NamespaceManagement = 0x0D,
    /// <summary>Namespace Attachment (§5.19).</summary>
    NamespaceAttachment = 0x15,
    /// <summary>Format NVM (§5.23, NVM command set specific).</summary>
    FormatNvm = 0x80,
    /// <summary>Asynchronous Event Request (§5.2).</summary>
    AsynchronousEventRequest = 0x0C,
}

/// <summary>NVM command set I/O opcodes (NVMe 1.4 §6, Figure 346).</summary>
public enum NvmOpcode : byte
{
    /// <summary>Flush.</summary>
    Flush = 0x00,
    /// <summary>Write.</summary>
    Write = 0x01,
    /// <summary>Read.</summary>
    Read = 0x02,
    /// <summary>Compare (§6.2).</summary>
    Compare = 0x05,
    /// <summary>Write Zeroes.</summary>
    WriteZeroes = 0x08,
    /// <summary>Dataset Management.</summary>
    DatasetManagement = 0x09,
}

/// <summary>Identify CNS values (NVMe 1.4 §5.15.1, Figure 244).</summary>
public enum IdentifyCns : byte
{
    /// <summary>Identify Namespace data structure for the NSID.</summary>
    Namespace = 0x00,
    /// <summary>Identify Controller data structure.</summary>
    Controller = 0x01,
    /// <summary>Active namespace ID list, NSIDs above the given one.</summary>
    ActiveNamespaces = 0x02,
    /// <summary>Namespace Identification Descriptor list of an active NSID.</summary>
    NamespaceDescriptors = 0x03,
    /// <summary>Allocated namespace ID list, NSIDs above the given one.</summary>
    AllocatedNamespaces = 0x10,
    /// <summary>Identify Namespace data structure for an allocated NSID (attached or not).</summary>
    AllocatedNamespace = 0x11,
    /// <summary>Controller list: controllers attached to the NSID, IDs from CDW10.CNTID on.</summary>
    AttachedControllers = 0x12,
    /// <summary>Controller list: every controller in the NVM subsystem, IDs from CDW10.CNTID on.</summary>
    SubsystemControllers = 0x13,
    /// <summary>I/O Command Set specific Identify Controller for the command set CDW11.CSI names (NVMe 2.0 Figure 273).</summary>
    IoCommandSetController = 0x06,
    /// <summary>I/O Command Set data structure: the command set combinations the controller supports (NVMe 2.0 Figure 273).</summary>
    IoCommandSetCombinations = 0x1C,
}

/// <summary>Feature identifiers used by the driver and the model (NVMe 1.4 §5.21.1, Figure 271).</summary>
public enum FeatureId : byte
{
    /// <summary>Arbitration (§5.21.1.1).</summary>
    Arbitration = 0x01,
    /// <summary>Power Management (§5.21.1.2).</summary>
    PowerManagement = 0x02,
    /// <summary>Temperature Threshold (§5.21.1.4).</summary>
    TemperatureThreshold = 0x04,
    /// <summary>Error Recovery (§5.21.1.5).</summary>
    ErrorRecovery = 0x05,
    /// <summary>Volatile Write Cache (§5.21.1.6).</summary>
    VolatileWriteCache = 0x06,
    /// <summary>Number of Queues (§5.21.1.7).</summary>
    NumberOfQueues = 0x07,
    /// <summary>Interrupt Coalescing (§5.21.1.8).</summary>
    InterruptCoalescing = 0x08,
    /// <summary>Interrupt Vector Configuration (§5.21.1.9).</summary>
    InterruptVectorConfiguration = 0x09,
    /// <summary>Write Atomicity Normal (§5.21.1.10).</summary>
    WriteAtomicityNormal = 0x0A,
    /// <summary>Asynchronous Event Configuration (§5.21.1.11).</summary>
    AsynchronousEventConfiguration = 0x0B,
}

/// <summary>
/// A 64-byte submission queue entry (NVMe 1.4 §4.2, "Submission Queue Entry – Command Format"), laid out
/// exactly as the controller reads it. Fields are host-endian; the library only runs on little-endian CPUs,
/// which is what NVMe specifies.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
public partial struct NvmeCommand
{
    /// <summary>Bytes per entry (CC.IOSQES = 6).</summary>
    public const int Size = 64;

    /// <summary>CDW0: opcode bits 7:0, FUSE 9:8, PSDT 15:14 (00b: PRPs), command identifier 31:16.</summary>
    public uint Cdw0;
    /// <summary>Namespace identifier.</summary>
    public uint Nsid;
    /// <summary>CDW2 (command specific).</summary>
    public uint Cdw2;
    /// <summary>CDW3 (command specific).</summary>
    public uint Cdw3;
    // MPTR (bytes 23:16) and DPTR (PRP1 bytes 31:24, PRP2 bytes 39:32) are plain 64-bit fields in the layout;
    // the properties below are the one place where a typed DmaAddress becomes the wire value and back.
    private ulong _mptr;
    private ulong _prp1;
    private ulong _prp2;
    /// <summary>Command dword 10.</summary>
    public uint Cdw10;
    /// <summary>Command dword 11.</summary>
    public uint Cdw11;
    /// <summary>Command dword 12.</summary>
    public uint Cdw12;
    /// <summary>Command dword 13.</summary>
    public uint Cdw13;
    /// <summary>Command dword 14.</summary>
    public uint Cdw14;
    /// <summary>Command dword 15.</summary>
    public uint Cdw15;

    /// <summary>MPTR: the metadata pointer (bytes 23:16).</summary>
    public DmaAddress Mptr
    {
        readonly get => new(_mptr);
        set => _mptr = value.Value;
    }

    /// <summary>DPTR PRP entry 1 (bytes 31:24): the first data page, which may carry a dword-aligned offset.</summary>
    public DmaAddress Prp1
    {
        readonly get => new(_prp1);
        set => _prp1 = value.Value;
    }

    /// <summary>DPTR PRP entry 2 (bytes 39:32): the second page, a PRP list pointer, or 0.</summary>
    public DmaAddress Prp2
    {
        readonly get => new(_prp2);
        set => _prp2 = value.Value;
    }

    /// <summary>The opcode (CDW0 bits 7:0).</summary>
    public readonly byte Opcode => (byte)Cdw0;

    /// <summary>The command identifier (CDW0 bits 31:16).</summary>
    public ushort CommandId
    {
        readonly get => (ushort)(Cdw0 >> 16);
        set => Cdw0 = (Cdw0 & 0xFFFF) | (uint)value << 16;
    }

    /// <summary>For Read/Write/Write Zeroes: the starting LBA (CDW10 low, CDW11 high).</summary>
    public readonly ulong StartingLba => Cdw10 | (ulong)Cdw11 << 32;

    /// <summary>For Read/Write/Write Zeroes: the number of logical blocks (CDW12 bits 15:0 are 0's based).</summary>
    public readonly int BlockCount => (int)(Cdw12 & 0xFFFF) + 1;

    private static NvmeCommand Make(byte opcode, uint nsid) => new() { Cdw0 = opcode, Nsid = nsid };

    /// <summary>Identify (NVMe 1.4 §5.15): CNS in CDW10 bits 7:0; the 4 KiB result lands at PRP1/PRP2.</summary>
    public static NvmeCommand Identify(IdentifyCns cns, uint nsid, DmaAddress prp1, DmaAddress prp2)
    {
        var c = Make((byte)AdminOpcode.Identify, nsid);
        c.Prp1 = prp1;
        c.Prp2 = prp2;
        c.Cdw10 = (byte)cns;
        return c;
    }

    /// <summary>
    /// Set Features, Number of Queues (NVMe 1.4 §5.21.1.7): NSQR in CDW11 bits 15:0 and NCQR in bits 31:16,
    /// both 0's based. The completion's DW0 holds what was allocated in the same layout.
    /// </summary>
    public static NvmeCommand SetNumberOfQueues(int submissionQueues, int completionQueues)
    {
        if (submissionQueues is < 1 or > 65535) { throw new ArgumentOutOfRangeException(nameof(submissionQueues)); }
        if (completionQueues is < 1 or > 65535) { throw new ArgumentOutOfRangeException(nameof(completionQueues)); }
        var c = Make((byte)AdminOpcode.SetFeatures, 0);
        c.Cdw10 = (byte)FeatureId.NumberOfQueues;
        c.Cdw11 = (uint)(submissionQueues - 1) | (uint)(completionQueues - 1) << 16;
        return c;
    }

    /// <summary>
    /// Create I/O Completion Queue (NVMe 1.4 §5.3): CDW10 QID 15:0 and QSIZE 31:16 (0's based);
    /// CDW11 PC (bit 0, physically contiguous), IEN (bit 1, interrupts enabled), IV (31:16, MSI-X vector).
    /// </summary>
    public static NvmeCommand CreateIoCompletionQueue(int queueId, int entries, DmaAddress baseAddress, bool interruptsEnabled, int vector)
    {
        CheckQueue(queueId, entries);
        var c = Make((byte)AdminOpcode.CreateIoCompletionQueue, 0);
        c.Prp1 = baseAddress;
        c.Cdw10 = (uint)queueId | (uint)(entries - 1) << 16;
        c.Cdw11 = 1u | (interruptsEnabled ? 2u : 0u) | (uint)(ushort)vector << 16;
        return c;
    }

    /// <summary>
    /// Create I/O Submission Queue (NVMe 1.4 §5.4): CDW10 QID and QSIZE as for a CQ; CDW11 PC (bit 0),
    /// QPRIO 2:1 (unused under round robin), CQID 31:16.
    /// </summary>
    public static NvmeCommand CreateIoSubmissionQueue(int queueId, int entries, DmaAddress baseAddress, int completionQueueId)
    {
        CheckQueue(queueId, entries);
        var c = Make((byte)AdminOpcode.CreateIoSubmissionQueue, 0);
        c.Prp1 = baseAddress;
        c.Cdw10 = (uint)queueId | (uint)(entries - 1) << 16;
        c.Cdw11 = 1u | (uint)(ushort)completionQueueId << 16;
        return c;
    }

    /// <summary>Delete I/O Submission Queue (NVMe 1.4 §5.6): QID in CDW10.</summary>
    public static NvmeCommand DeleteIoSubmissionQueue(int queueId) =>
        Make((byte)AdminOpcode.DeleteIoSubmissionQueue, 0) with { Cdw10 = (uint)(ushort)queueId };

    /// <summary>Delete I/O Completion Queue (NVMe 1.4 §5.5): QID in CDW10.</summary>
    public static NvmeCommand DeleteIoCompletionQueue(int queueId) =>
        Make((byte)AdminOpcode.DeleteIoCompletionQueue, 0) with { Cdw10 = (uint)(ushort)queueId };

    /// <summary>
    /// Read or Write (NVMe 1.4 §6.9, §6.15): SLBA in CDW10/11, NLB (0's based) in CDW12 bits 15:0, data at PRP1/PRP2.
    /// </summary>
    public static NvmeCommand ReadWrite(NvmOpcode opcode, uint nsid, ulong startingLba, int blocks, DmaAddress prp1, DmaAddress prp2)
    {
        if (opcode is not (NvmOpcode.Read or NvmOpcode.Write)) { throw new ArgumentOutOfRangeException(nameof(opcode), opcode, "Read or Write"); }
        return RangeWithData(opcode, nsid, startingLba, blocks, prp1, prp2);
    }

    /// <summary>A command with SLBA, NLB and a data pointer (Read, Write, Compare: NVMe 1.4 Figures 346, 387, 364).</summary>
    private static NvmeCommand RangeWithData(NvmOpcode opcode, uint nsid, ulong startingLba, int blocks, DmaAddress prp1, DmaAddress prp2)
    {
        var c = Make((byte)opcode, nsid);
        SetRange(ref c, startingLba, blocks);
        c.Prp1 = prp1;
        c.Prp2 = prp2;
        return c;
    }

    /// <summary>Write Zeroes (NVMe 1.4 §6.16): SLBA and NLB as for Write, no data pointer.</summary>
    public static NvmeCommand WriteZeroes(uint nsid, ulong startingLba, int blocks)
    {
        var c = Make((byte)NvmOpcode.WriteZeroes, nsid);
        SetRange(ref c, startingLba, blocks);
        return c;
    }

    /// <summary>Flush (NVMe 1.4 §6.8): commits volatile write cache contents of the namespace to media.</summary>
    public static NvmeCommand Flush(uint nsid) => Make((byte)NvmOpcode.Flush, nsid);

    /// <summary>
    /// Dataset Management with the Deallocate attribute (NVMe 1.4 §6.7): CDW10 NR (bits 7:0, 0's based number
    /// of 16-byte ranges at PRP1), CDW11 AD (bit 2).
    /// </summary>
    public static NvmeCommand Deallocate(uint nsid, int ranges, DmaAddress prp1)
    {
        if (ranges is < 1 or > 256) { throw new ArgumentOutOfRangeException(nameof(ranges), ranges, "1..256 ranges"); }
        var c = Make((byte)NvmOpcode.DatasetManagement, nsid);
        c.Prp1 = prp1;
        c.Cdw10 = (uint)(ranges - 1);
        c.Cdw11 = 1u << 2;
        return c;
    }

    private static void SetRange(ref NvmeCommand c, ulong startingLba, int blocks)
    {
        if (blocks is < 1 or > 65536) { throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "one command moves 1..65536 blocks"); }
        c.Cdw10 = (uint)startingLba;
        c.Cdw11 = (uint)(startingLba >> 32);
        c.Cdw12 = (uint)(blocks - 1);
    }

    private static void CheckQueue(int queueId, int entries)
    {
        if (queueId is < 1 or > 65535) { throw new ArgumentOutOfRangeException(nameof(queueId), queueId, "I/O queue IDs are 1..65535"); }
        if (entries is < 2 or > 65536) { throw new ArgumentOutOfRangeException(nameof(entries), entries, "a queue holds 2..65536 entries"); }
    }
}

/// <summary>One range of a Dataset Management command (NVMe 1.4 §6.7, Figure 364): 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct DsmRange
{
    /// <summary>Context attributes.</summary>
    public uint ContextAttributes;
    /// <summary>Length in logical blocks (not 0's based).</summary>
    public uint BlockCount;
    /// <summary>Starting LBA.</summary>
    public ulong StartingLba;
}
