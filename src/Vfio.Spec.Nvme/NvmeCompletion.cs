using System.Runtime.InteropServices;

namespace Vfio.Spec.Nvme;

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

/// <summary>Generic command status values, SCT 0h (NVMe 1.4 §4.6.1.2.1): the ones this project names or returns.</summary>
public enum GenericStatusCode : byte
{
    /// <summary>Successful Completion.</summary>
    SuccessfulCompletion = 0x00,
    /// <summary>Invalid Command Opcode.</summary>
    InvalidCommandOpcode = 0x01,
    /// <summary>Invalid Field in Command.</summary>
    InvalidField = 0x02,
    /// <summary>Command ID Conflict.</summary>
    CommandIdConflict = 0x03,
    /// <summary>Data Transfer Error.</summary>
    DataTransferError = 0x04,
    /// <summary>Internal Error.</summary>
    InternalError = 0x06,
    /// <summary>Command Abort Requested.</summary>
    CommandAbortRequested = 0x07,
    /// <summary>Command Aborted due to SQ Deletion.</summary>
    CommandAbortedSqDeletion = 0x08,
    /// <summary>Invalid Namespace or Format.</summary>
    InvalidNamespaceOrFormat = 0x0B,
    /// <summary>Command Sequence Error.</summary>
    CommandSequenceError = 0x0C,
    /// <summary>Invalid PRP Offset.</summary>
    InvalidPrpOffset = 0x13,
    /// <summary>LBA Out of Range (NVM command set).</summary>
    LbaOutOfRange = 0x80,
    /// <summary>Capacity Exceeded (NVM command set).</summary>
    CapacityExceeded = 0x81,
    /// <summary>Namespace Not Ready (NVM command set).</summary>
    NamespaceNotReady = 0x82,
}

/// <summary>Command specific status values, SCT 1h (NVMe 1.4 §4.6.1.2.2): the queue management ones.</summary>
public enum CommandSpecificStatusCode : byte
{
    /// <summary>Completion Queue Invalid (Create I/O Submission Queue).</summary>
    CompletionQueueInvalid = 0x00,
    /// <summary>Invalid Queue Identifier (Create and Delete I/O queue commands).</summary>
    InvalidQueueIdentifier = 0x01,
    /// <summary>Invalid Queue Size (Create I/O queue commands).</summary>
    InvalidQueueSize = 0x02,
    /// <summary>Invalid Firmware Slot (Firmware Commit).</summary>
    InvalidFirmwareSlot = 0x06,
    /// <summary>Invalid Firmware Image (Firmware Commit).</summary>
    InvalidFirmwareImage = 0x07,
    /// <summary>Invalid Interrupt Vector (Create I/O Completion Queue).</summary>
    InvalidInterruptVector = 0x08,
    /// <summary>Firmware Activation Requires Conventional Reset (Firmware Commit: committed, active after that reset).</summary>
    FirmwareActivationRequiresConventionalReset = 0x0B,
    /// <summary>Asynchronous Event Request Limit Exceeded (more AERs outstanding than AERL + 1).</summary>
    AsyncEventRequestLimitExceeded = 0x05,
    /// <summary>Invalid Log Page (Get Log Page of an unsupported LID).</summary>
    InvalidLogPage = 0x09,
    /// <summary>Invalid Queue Deletion (Delete I/O Completion Queue while an SQ still uses it).</summary>
    InvalidQueueDeletion = 0x0C,
    /// <summary>Feature Identifier Not Saveable (Set Features with SV set).</summary>
    FeatureIdentifierNotSaveable = 0x0D,
    /// <summary>Feature Not Changeable (Set Features).</summary>
    FeatureNotChangeable = 0x0E,
    /// <summary>Feature Not Namespace Specific (Set Features with an NSID for a controller-wide feature).</summary>
    FeatureNotNamespaceSpecific = 0x0F,
    /// <summary>Firmware Activation Requires NVM Subsystem Reset (Firmware Commit).</summary>
    FirmwareActivationRequiresNvmSubsystemReset = 0x10,
    /// <summary>Firmware Activation Requires Controller Level Reset (Firmware Commit).</summary>
    FirmwareActivationRequiresControllerLevelReset = 0x11,
    /// <summary>Overlapping Range (Firmware Image Download).</summary>
    OverlappingRange = 0x14,
    /// <summary>Invalid Format (Format NVM, Namespace Management: the LBA format or protection settings are not offered).</summary>
    InvalidFormat = 0x0A,
    /// <summary>Namespace Insufficient Capacity (Namespace Management: more than the unallocated NVM capacity).</summary>
    NamespaceInsufficientCapacity = 0x15,
    /// <summary>Namespace Identifier Unavailable (Namespace Management: every NSID up to NN is allocated).</summary>
    NamespaceIdentifierUnavailable = 0x16,
    /// <summary>Namespace Already Attached (Namespace Attachment).</summary>
    NamespaceAlreadyAttached = 0x18,
    /// <summary>Namespace Is Private (Namespace Attachment: NMIC says it may have only one controller).</summary>
    NamespaceIsPrivate = 0x19,
    /// <summary>Namespace Not Attached (Namespace Attachment, detach).</summary>
    NamespaceNotAttached = 0x1A,
    /// <summary>Thin Provisioning Not Supported (Namespace Management: NCAP below NSZE).</summary>
    ThinProvisioningNotSupported = 0x1B,
    /// <summary>Controller List Invalid (Namespace Attachment).</summary>
    ControllerListInvalid = 0x1C,
}

/// <summary>Media and data integrity error values, SCT 2h (NVMe 1.4 §4.6.1.2.3): the one named here.</summary>
public enum MediaErrorStatusCode : byte
{
    /// <summary>Unrecovered Read Error (NVM command set).</summary>
    UnrecoveredReadError = 0x81,
    /// <summary>Compare Failure (Compare: the data differ).</summary>
    CompareFailure = 0x85,
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

    /// <summary>A generic command status (SCT 0h).</summary>
    public static NvmeStatus Create(GenericStatusCode code, bool doNotRetry = false) =>
        Create(StatusCodeType.Generic, (byte)code, doNotRetry);

    /// <summary>A command specific status (SCT 1h).</summary>
    public static NvmeStatus Create(CommandSpecificStatusCode code, bool doNotRetry = false) =>
        Create(StatusCodeType.CommandSpecific, (byte)code, doNotRetry);

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
        (StatusCodeType.Generic, (byte)GenericStatusCode.SuccessfulCompletion) => "Successful Completion",
        (StatusCodeType.Generic, (byte)GenericStatusCode.InvalidCommandOpcode) => "Invalid Command Opcode",
        (StatusCodeType.Generic, (byte)GenericStatusCode.InvalidField) => "Invalid Field in Command",
        (StatusCodeType.Generic, (byte)GenericStatusCode.CommandIdConflict) => "Command ID Conflict",
        (StatusCodeType.Generic, (byte)GenericStatusCode.DataTransferError) => "Data Transfer Error",
        (StatusCodeType.Generic, (byte)GenericStatusCode.InternalError) => "Internal Error",
        (StatusCodeType.Generic, (byte)GenericStatusCode.CommandAbortRequested) => "Command Abort Requested",
        (StatusCodeType.Generic, (byte)GenericStatusCode.CommandAbortedSqDeletion) => "Command Aborted due to SQ Deletion",
        (StatusCodeType.Generic, (byte)GenericStatusCode.InvalidNamespaceOrFormat) => "Invalid Namespace or Format",
        (StatusCodeType.Generic, (byte)GenericStatusCode.InvalidPrpOffset) => "Invalid PRP Offset",
        (StatusCodeType.Generic, (byte)GenericStatusCode.LbaOutOfRange) => "LBA Out of Range",
        (StatusCodeType.Generic, (byte)GenericStatusCode.CapacityExceeded) => "Capacity Exceeded",
        (StatusCodeType.Generic, (byte)GenericStatusCode.NamespaceNotReady) => "Namespace Not Ready",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.CompletionQueueInvalid) => "Completion Queue Invalid",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidQueueIdentifier) => "Invalid Queue Identifier",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidQueueSize) => "Invalid Queue Size",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidFirmwareSlot) => "Invalid Firmware Slot",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidFirmwareImage) => "Invalid Firmware Image",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidInterruptVector) => "Invalid Interrupt Vector",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FirmwareActivationRequiresConventionalReset) => "Firmware Activation Requires Conventional Reset",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidQueueDeletion) => "Invalid Queue Deletion",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FeatureIdentifierNotSaveable) => "Feature Identifier Not Saveable",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FeatureNotChangeable) => "Feature Not Changeable",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FeatureNotNamespaceSpecific) => "Feature Not Namespace Specific",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FirmwareActivationRequiresNvmSubsystemReset) => "Firmware Activation Requires NVM Subsystem Reset",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.FirmwareActivationRequiresControllerLevelReset) => "Firmware Activation Requires Controller Level Reset",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.OverlappingRange) => "Overlapping Range",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidFormat) => "Invalid Format",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.NamespaceInsufficientCapacity) => "Namespace Insufficient Capacity",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.NamespaceIdentifierUnavailable) => "Namespace Identifier Unavailable",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.NamespaceAlreadyAttached) => "Namespace Already Attached",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.NamespaceIsPrivate) => "Namespace Is Private",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.NamespaceNotAttached) => "Namespace Not Attached",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.ThinProvisioningNotSupported) => "Thin Provisioning Not Supported",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.ControllerListInvalid) => "Controller List Invalid",
        (StatusCodeType.MediaError, (byte)MediaErrorStatusCode.CompareFailure) => "Compare Failure",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.AsyncEventRequestLimitExceeded) => "Asynchronous Event Request Limit Exceeded",
        (StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidLogPage) => "Invalid Log Page",
        (StatusCodeType.MediaError, (byte)MediaErrorStatusCode.UnrecoveredReadError) => "Unrecovered Read Error",
        _ => null,
    };

    /// <inheritdoc />
    public override string ToString() =>
        $"SCT {(int)Type:x} SC 0x{Code:x2}{(Name is { } n ? $" ({n})" : "")}{(DoNotRetry ? ", DNR" : "")}{(More ? ", More" : "")}";
}
