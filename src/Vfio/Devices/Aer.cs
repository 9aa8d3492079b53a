using System.Numerics;
using System.Text;

namespace Vfio.Devices;

/// <summary>Extended capability IDs used by the library (PCIe Base 6.0 §7.6.3, the Extended Capability header).</summary>
public static class PciExtendedCapabilityId
{
    /// <summary>0001h: Advanced Error Reporting (PCIe Base 6.0 §7.8.4).</summary>
    public const ushort AdvancedErrorReporting = 0x0001;
}

/// <summary>
/// Bits of the AER Uncorrectable Error Status, Mask and Severity registers (PCIe Base 6.0 §7.8.4.2-7.8.4.4, the three
/// registers share one layout). Bits not named here are reserved in the 4.0 layout and decode as "bit N".
/// </summary>
[Flags]
public enum AerUncorrectableErrors : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Bit 4: Data Link Protocol Error Status.</summary>
    DataLinkProtocolError = 1u << 4,
    /// <summary>Bit 5: Surprise Down Error Status.</summary>
    SurpriseDownError = 1u << 5,
    /// <summary>Bit 12: Poisoned TLP Received Status.</summary>
    PoisonedTlpReceived = 1u << 12,
    /// <summary>Bit 13: Flow Control Protocol Error Status.</summary>
    FlowControlProtocolError = 1u << 13,
    /// <summary>Bit 14: Completion Timeout Status.</summary>
    CompletionTimeout = 1u << 14,
    /// <summary>Bit 15: Completer Abort Status.</summary>
    CompleterAbort = 1u << 15,
    /// <summary>Bit 16: Unexpected Completion Status.</summary>
    UnexpectedCompletion = 1u << 16,
    /// <summary>Bit 17: Receiver Overflow Status.</summary>
    ReceiverOverflow = 1u << 17,
    /// <summary>Bit 18: Malformed TLP Status.</summary>
    MalformedTlp = 1u << 18,
    /// <summary>Bit 19: ECRC Error Status.</summary>
    EcrcError = 1u << 19,
    /// <summary>Bit 20: Unsupported Request Error Status.</summary>
    UnsupportedRequestError = 1u << 20,
    /// <summary>Bit 21: ACS Violation Status.</summary>
    AcsViolation = 1u << 21,
    /// <summary>Bit 22: Uncorrectable Internal Error Status.</summary>
    UncorrectableInternalError = 1u << 22,
    /// <summary>Bit 23: MC Blocked TLP Status.</summary>
    McBlockedTlp = 1u << 23,
    /// <summary>Bit 24: AtomicOp Egress Blocked Status.</summary>
    AtomicOpEgressBlocked = 1u << 24,
    /// <summary>Bit 25: TLP Prefix Blocked Error Status.</summary>
    TlpPrefixBlockedError = 1u << 25,
    /// <summary>Bit 26: Poisoned TLP Egress Blocked Status.</summary>
    PoisonedTlpEgressBlocked = 1u << 26,
}

/// <summary>Bits of the AER Correctable Error Status and Mask registers (PCIe Base 6.0 §7.8.4.5-7.8.4.6).</summary>
[Flags]
public enum AerCorrectableErrors : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Bit 0: Receiver Error Status.</summary>
    ReceiverError = 1u << 0,
    /// <summary>Bit 6: Bad TLP Status.</summary>
    BadTlp = 1u << 6,
    /// <summary>Bit 7: Bad DLLP Status.</summary>
    BadDllp = 1u << 7,
    /// <summary>Bit 8: REPLAY_NUM Rollover Status.</summary>
    ReplayNumRollover = 1u << 8,
    /// <summary>Bit 12: Replay Timer Timeout Status.</summary>
    ReplayTimerTimeout = 1u << 12,
    /// <summary>Bit 13: Advisory Non-Fatal Error Status.</summary>
    AdvisoryNonFatalError = 1u << 13,
    /// <summary>Bit 14: Corrected Internal Error Status.</summary>
    CorrectedInternalError = 1u << 14,
    /// <summary>Bit 15: Header Log Overflow Status.</summary>
    HeaderLogOverflow = 1u << 15,
}

/// <summary>
/// The Advanced Error Capabilities and Control register (PCIe Base 6.0 §7.8.4.7), decoded: the First Error Pointer
/// (bits 4:0) and the ECRC, multiple-header and prefix-log capability and enable bits.
/// </summary>
/// <param name="Raw">The register as read.</param>
public readonly record struct AerCapabilitiesAndControl(uint Raw)
{
    /// <summary>Bits 4:0, First Error Pointer: the bit number, in Uncorrectable Error Status, of the error first reported.</summary>
    public int FirstErrorPointer => (int)(Raw & 0x1F);
    /// <summary>Bit 5: ECRC Generation Capable.</summary>
    public bool EcrcGenerationCapable => (Raw & (1u << 5)) != 0;
    /// <summary>Bit 6: ECRC Generation Enable.</summary>
    public bool EcrcGenerationEnable => (Raw & (1u << 6)) != 0;
    /// <summary>Bit 7: ECRC Check Capable.</summary>
    public bool EcrcCheckCapable => (Raw & (1u << 7)) != 0;
    /// <summary>Bit 8: ECRC Check Enable.</summary>
    public bool EcrcCheckEnable => (Raw & (1u << 8)) != 0;
    /// <summary>Bit 9: Multiple Header Recording Capable.</summary>
    public bool MultipleHeaderRecordingCapable => (Raw & (1u << 9)) != 0;
    /// <summary>Bit 10: Multiple Header Recording Enable.</summary>
    public bool MultipleHeaderRecordingEnable => (Raw & (1u << 10)) != 0;
    /// <summary>Bit 11: TLP Prefix Log Present.</summary>
    public bool TlpPrefixLogPresent => (Raw & (1u << 11)) != 0;
    /// <summary>Bit 12: Completion Timeout Prefix/Header Log Capable.</summary>
    public bool CompletionTimeoutLogCapable => (Raw & (1u << 12)) != 0;
}

/// <summary>
/// One reading of a function's AER registers (PCIe Base 6.0 §7.8.4): what it logged, masks, which uncorrectable
/// errors are fatal, the first error pointer and the header of the TLP that caused it.
/// </summary>
/// <param name="Offset">Config space offset of the AER capability.</param>
/// <param name="Version">Capability version (header bits 19:16).</param>
/// <param name="UncorrectableStatus">Uncorrectable Error Status (§7.8.4.2).</param>
/// <param name="UncorrectableMask">Uncorrectable Error Mask (§7.8.4.3): set bits are logged but not reported.</param>
/// <param name="UncorrectableSeverity">Uncorrectable Error Severity (§7.8.4.4): set bits are fatal, clear bits non-fatal.</param>
/// <param name="CorrectableStatus">Correctable Error Status (§7.8.4.5).</param>
/// <param name="CorrectableMask">Correctable Error Mask (§7.8.4.6).</param>
/// <param name="Control">Advanced Error Capabilities and Control (§7.8.4.7).</param>
/// <param name="HeaderLog">Header Log (§7.8.4.8): the four DWs of the header of the TLP of the first error.</param>
public sealed record AerStatus(int Offset, byte Version,
    AerUncorrectableErrors UncorrectableStatus, AerUncorrectableErrors UncorrectableMask, AerUncorrectableErrors UncorrectableSeverity,
    AerCorrectableErrors CorrectableStatus, AerCorrectableErrors CorrectableMask, AerCapabilitiesAndControl Control,
    IReadOnlyList<uint> HeaderLog)
{
    /// <summary>True when any uncorrectable error is logged.</summary>
    public bool HasUncorrectable => UncorrectableStatus != AerUncorrectableErrors.None;

    /// <summary>True when any correctable error is logged.</summary>
    public bool HasCorrectable => CorrectableStatus != AerCorrectableErrors.None;

    /// <summary>The logged uncorrectable errors whose severity is fatal.</summary>
    public AerUncorrectableErrors FatalErrors => UncorrectableStatus & UncorrectableSeverity;

    /// <summary>
    /// The error the First Error Pointer names, when its status bit is still set (§7.8.4.7: the pointer is valid
    /// only while that bit is set); null otherwise.
    /// </summary>
    public AerUncorrectableErrors? FirstError
    {
        get
        {
            var bit = (AerUncorrectableErrors)(1u << Control.FirstErrorPointer);
            return (UncorrectableStatus & bit) != 0 ? bit : null;
        }
    }

    /// <summary>A one-line summary with the spec names of every logged error, e.g. for a log.</summary>
    public override string ToString()
    {
        var text = new StringBuilder($"AER at 0x{Offset:x3}: uncorrectable [{AerNames.Describe(UncorrectableStatus)}]");
        if (FatalErrors != AerUncorrectableErrors.None) { text.Append($" fatal [{AerNames.Describe(FatalErrors)}]"); }
        if (FirstError is { } first) { text.Append($" first {AerNames.Describe(first)}"); }
        text.Append($", correctable [{AerNames.Describe(CorrectableStatus)}]");
        if (HasUncorrectable)
        {
            text.Append($", header log {HeaderLog[0]:x8} {HeaderLog[1]:x8} {HeaderLog[2]:x8} {HeaderLog[3]:x8}");
        }
        return text.ToString();
    }
}

/// <summary>The spec's names of AER status bits (PCIe Base 6.0 §7.8.4.2 and §7.8.4.5).</summary>
public static class AerNames
{
    private static readonly Dictionary<uint, string> Uncorrectable = new()
    {
        [4] = "Data Link Protocol Error", [5] = "Surprise Down Error", [12] = "Poisoned TLP Received",
        [13] = "Flow Control Protocol Error", [14] = "Completion Timeout", [15] = "Completer Abort",
        [16] = "Unexpected Completion", [17] = "Receiver Overflow", [18] = "Malformed TLP", [19] = "ECRC Error",
        [20] = "Unsupported Request Error", [21] = "ACS Violation", [22] = "Uncorrectable Internal Error",
        [23] = "MC Blocked TLP", [24] = "AtomicOp Egress Blocked", [25] = "TLP Prefix Blocked Error",
        [26] = "Poisoned TLP Egress Blocked",
    };

    private static readonly Dictionary<uint, string> Correctable = new()
    {
        [0] = "Receiver Error", [6] = "Bad TLP", [7] = "Bad DLLP", [8] = "REPLAY_NUM Rollover",
        [12] = "Replay Timer Timeout", [13] = "Advisory Non-Fatal Error", [14] = "Corrected Internal Error",
        [15] = "Header Log Overflow",
    };

    /// <summary>The names of the set bits, comma-separated ("none" when no bit is set); unnamed bits as "bit N".</summary>
    public static string Describe(AerUncorrectableErrors errors) => Join(List(errors));

    /// <summary>The names of the set bits, comma-separated ("none" when no bit is set); unnamed bits as "bit N".</summary>
    public static string Describe(AerCorrectableErrors errors) => Join(List(errors));

    /// <summary>The names of the set bits, lowest bit first; unnamed bits as "bit N".</summary>
    public static IReadOnlyList<string> List(AerUncorrectableErrors errors) => List((uint)errors, Uncorrectable);

    /// <summary>The names of the set bits, lowest bit first; unnamed bits as "bit N".</summary>
    public static IReadOnlyList<string> List(AerCorrectableErrors errors) => List((uint)errors, Correctable);

    private static string Join(IReadOnlyList<string> names) => names.Count == 0 ? "none" : string.Join(", ", names);

    private static List<string> List(uint bits, Dictionary<uint, string> names)
    {
        var parts = new List<string>();
        while (bits != 0)
        {
            uint bit = (uint)BitOperations.TrailingZeroCount(bits);
            parts.Add(names.TryGetValue(bit, out var name) ? name : $"bit {bit}");
            bits &= bits - 1;
        }
        return parts;
    }
}

/// <summary>
/// A function's AER capability in config space (PCIe Base 6.0 §7.8.4): read its registers, clear logged errors
/// (the status registers are RW1C: writing 1 clears a bit, 0 leaves it) and change the correctable mask.
/// Found with <see cref="PciConfigSpace.FindAer"/>.
/// </summary>
public sealed class AerCapability
{
    private const int UncorrectableStatusOffset = 0x04, UncorrectableMaskOffset = 0x08, UncorrectableSeverityOffset = 0x0C,
        CorrectableStatusOffset = 0x10, CorrectableMaskOffset = 0x14, ControlOffset = 0x18, HeaderLogOffset = 0x1C;

    private readonly PciConfigSpace _config;

    internal AerCapability(PciConfigSpace config, PciExtendedCapability capability)
    {
        _config = config;
        Offset = capability.Offset;
        Version = capability.Version;
    }

    /// <summary>Offset of the capability header.</summary>
    public int Offset { get; }

    /// <summary>Capability version.</summary>
    public byte Version { get; }

    /// <summary>Reads every register of the capability (§7.8.4.2-7.8.4.8) in one snapshot.</summary>
    /// <exception cref="VfioException">Config space could not be read.</exception>
    public AerStatus Read() => new(Offset, Version,
        (AerUncorrectableErrors)_config.Read32(Offset + UncorrectableStatusOffset),
        (AerUncorrectableErrors)_config.Read32(Offset + UncorrectableMaskOffset),
        (AerUncorrectableErrors)_config.Read32(Offset + UncorrectableSeverityOffset),
        (AerCorrectableErrors)_config.Read32(Offset + CorrectableStatusOffset),
        (AerCorrectableErrors)_config.Read32(Offset + CorrectableMaskOffset),
        new AerCapabilitiesAndControl(_config.Read32(Offset + ControlOffset)),
        [
            _config.Read32(Offset + HeaderLogOffset), _config.Read32(Offset + HeaderLogOffset + 4),
            _config.Read32(Offset + HeaderLogOffset + 8), _config.Read32(Offset + HeaderLogOffset + 12),
        ]);

    /// <summary>Clears the given logged uncorrectable errors (RW1C, §7.8.4.2); other bits are left as they are.</summary>
    public void ClearUncorrectable(AerUncorrectableErrors errors) => _config.Write32(Offset + UncorrectableStatusOffset, (uint)errors);

    /// <summary>Clears the given logged correctable errors (RW1C, §7.8.4.5); other bits are left as they are.</summary>
    public void ClearCorrectable(AerCorrectableErrors errors) => _config.Write32(Offset + CorrectableStatusOffset, (uint)errors);

    /// <summary>
    /// Clears every logged error, uncorrectable and correctable, and returns what was logged: what a driver does once
    /// it has recovered, so the next error is seen afresh.
    /// </summary>
    public AerStatus ClearLogged()
    {
        var status = Read();
        ClearUncorrectable(status.UncorrectableStatus);
        ClearCorrectable(status.CorrectableStatus);
        return status;
    }

    /// <summary>
    /// Sets the Correctable Error Mask (§7.8.4.6). A masked error is still logged in Correctable Error Status but sends
    /// no ERR_COR message, so the host's AER driver neither sees nor clears it: an application that counts
    /// correctable errors itself (<see cref="Read"/>, then <see cref="ClearCorrectable"/>) masks them first.
    /// </summary>
    public void SetCorrectableMask(AerCorrectableErrors mask) => _config.Write32(Offset + CorrectableMaskOffset, (uint)mask);
}
