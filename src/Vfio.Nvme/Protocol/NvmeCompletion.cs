using System.Runtime.InteropServices;

namespace Vfio.Nvme.Protocol;

/// <summary>
/// A 16-byte completion queue entry (NVMe 1.4 §4.6, Figure 124): DW0 command specific, DW1 reserved,
/// DW2 SQ head pointer (15:0) and SQ identifier (31:16), DW3 command identifier (15:0), phase tag (bit 16)
/// and status field (31:17).
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
public struct NvmeCompletion
{
    /// <summary>Bytes per entry (CC.IOCQES = 4).</summary>
    public const int Size = 16;

    /// <summary>DW0, command specific.</summary>
    public uint Dw0;
    /// <summary>DW1, reserved or command specific.</summary>
    public uint Dw1;
    /// <summary>SQHD: how far the controller has consumed the submission queue.</summary>
    public ushort SubmissionQueueHead;
    /// <summary>SQID: the submission queue the command came from.</summary>
    public ushort SubmissionQueueId;
    /// <summary>CID: the command identifier the host gave.</summary>
    public ushort CommandId;
    /// <summary>Phase tag (bit 0) and status field (bits 15:1).</summary>
    public ushort StatusAndPhase;

    /// <summary>The phase tag.</summary>
    public readonly bool Phase => (StatusAndPhase & 1) != 0;

    /// <summary>The decoded status field.</summary>
    public readonly NvmeStatus Status => NvmeStatus.FromStatusAndPhase(StatusAndPhase);
}

/// <summary>Status code types (NVMe 1.4 §4.6.1.1, Figure 125).</summary>
public enum StatusCodeType
{
    /// <summary>Generic command status.</summary>
    Generic = 0,
    /// <summary>Command specific status.</summary>
    CommandSpecific = 1,
    /// <summary>Media and data integrity errors.</summary>
    MediaError = 2,
    /// <summary>Path related status.</summary>
    Path = 3,
    /// <summary>Vendor specific.</summary>
    VendorSpecific = 7,
}

/// <summary>
/// The status field of a completion (NVMe 1.4 §4.6.1, Figure 126), as the 15 bits above the phase tag:
/// SC bits 7:0, SCT bits 10:8, CRD bits 12:11, M bit 13, DNR bit 14.
/// </summary>
/// <param name="Value">The status field, without the phase tag.</param>
public readonly record struct NvmeStatus(ushort Value)
{
    /// <summary>Success.</summary>
    public static NvmeStatus Success => default;

    /// <summary>Decodes bits 15:1 of the completion's last 16-bit word.</summary>
    public static NvmeStatus FromStatusAndPhase(ushort statusAndPhase) => new((ushort)(statusAndPhase >> 1));

    /// <summary>Builds a status from its parts (for emulators and tests).</summary>
    public static NvmeStatus Create(StatusCodeType type, byte code, bool doNotRetry = false, bool more = false, int retryDelay = 0) =>
        new((ushort)(code | ((int)type & 7) << 8 | (retryDelay & 3) << 11 | (more ? 1 << 13 : 0) | (doNotRetry ? 1 << 14 : 0)));

    /// <summary>SC: status code.</summary>
    public byte Code => (byte)Value;
    /// <summary>SCT: status code type.</summary>
    public StatusCodeType Type => (StatusCodeType)((Value >> 8) & 7);
    /// <summary>CRD: command retry delay selector (0: none; 1-3 index CRDT1-3 of Identify Controller).</summary>
    public int RetryDelay => (Value >> 11) & 3;
    /// <summary>M: more status information is in the Error Information log page.</summary>
    public bool More => (Value & (1 << 13)) != 0;
    /// <summary>DNR: do not retry; the same command would fail again.</summary>
    public bool DoNotRetry => (Value & (1 << 14)) != 0;
    /// <summary>True when SCT and SC are both zero.</summary>
    public bool IsSuccess => (Value & 0x7FF) == 0;

    /// <summary>A short name for well-known codes (NVMe 1.4 Figures 127-130), or null.</summary>
    public string? Name => (Type, Code) switch
    {
        (StatusCodeType.Generic, 0x00) => "Successful Completion",
        (StatusCodeType.Generic, 0x01) => "Invalid Command Opcode",
        (StatusCodeType.Generic, 0x02) => "Invalid Field in Command",
        (StatusCodeType.Generic, 0x03) => "Command ID Conflict",
        (StatusCodeType.Generic, 0x04) => "Data Transfer Error",
        (StatusCodeType.Generic, 0x06) => "Internal Error",
        (StatusCodeType.Generic, 0x07) => "Command Abort Requested",
        (StatusCodeType.Generic, 0x08) => "Command Aborted due to SQ Deletion",
        (StatusCodeType.Generic, 0x0B) => "Invalid Namespace or Format",
        (StatusCodeType.Generic, 0x13) => "Invalid PRP Offset",
        (StatusCodeType.Generic, 0x80) => "LBA Out of Range",
        (StatusCodeType.Generic, 0x81) => "Capacity Exceeded",
        (StatusCodeType.Generic, 0x82) => "Namespace Not Ready",
        (StatusCodeType.CommandSpecific, 0x00) => "Completion Queue Invalid",
        (StatusCodeType.CommandSpecific, 0x01) => "Invalid Queue Identifier",
        (StatusCodeType.CommandSpecific, 0x02) => "Invalid Queue Size",
        (StatusCodeType.CommandSpecific, 0x08) => "Invalid Interrupt Vector",
        (StatusCodeType.CommandSpecific, 0x0C) => "Invalid Queue Deletion",
        (StatusCodeType.MediaError, 0x81) => "Unrecovered Read Error",
        _ => null,
    };

    /// <inheritdoc />
    public override string ToString() =>
        $"SCT {(int)Type:x} SC 0x{Code:x2}{(Name is { } n ? $" ({n})" : "")}{(DoNotRetry ? ", DNR" : "")}{(More ? ", More" : "")}";
}
