using System.Globalization;

namespace Vfio.Spec.Nvme;

/// <summary>
/// SEL of Get Features (NVMe 1.4 §5.13, Command Dword 10 bits 10:8): which value of a feature the controller
/// returns. A controller honours any value other than <see cref="Current"/> only when ONCS bit 4
/// (<see cref="OptionalNvmCommands.SaveAndSelect"/>) is set.
/// </summary>
public enum FeatureSelect : byte
{
    /// <summary>000b: the value in effect now.</summary>
    Current = 0,
    /// <summary>001b: the value the controller starts with when nothing was saved.</summary>
    Default = 1,
    /// <summary>010b: the value loaded at the next reset (the default when nothing was saved).</summary>
    Saved = 2,
    /// <summary>011b: the feature's capabilities in DW0 (<see cref="FeatureCapabilities"/>) instead of a value.</summary>
    Supported = 3,
}

/// <summary>What Get Features with SEL = 011b returns in DW0 (NVMe 1.4 §5.13.2, "Select" capabilities).</summary>
[Flags]
public enum FeatureCapabilities : uint
{
    /// <summary>Neither saveable, namespace specific nor changeable.</summary>
    None = 0,
    /// <summary>Bit 0: the value can be saved (Set Features SV = 1) and survives resets.</summary>
    Saveable = 1 << 0,
    /// <summary>Bit 1: the value is kept per namespace (the NSID of the command selects which).</summary>
    NamespaceSpecific = 1 << 1,
    /// <summary>Bit 2: Set Features may change the value.</summary>
    Changeable = 1 << 2,
}

/// <summary>One decoded field of a feature value, for display: e.g. "Volatile Write Cache Enable (WCE)" and "Enabled".</summary>
/// <param name="Name">The field's name with its spec mnemonic in parentheses.</param>
/// <param name="Value">The field's value in words and units.</param>
public readonly record struct FeatureField(string Name, string Value)
{
    /// <inheritdoc />
    public override string ToString() => $"{Name}: {Value}";
}

/// <summary>
/// A typed feature value: the fields of Set Features CDW11 and of the Get Features completion DW0, which share one
/// layout for every feature modelled here (NVMe 1.4 §5.21.1).
/// </summary>
/// <typeparam name="TSelf">The value type.</typeparam>
public interface INvmeFeature<TSelf> where TSelf : INvmeFeature<TSelf>
{
    /// <summary>The feature identifier.</summary>
    static abstract FeatureId Id { get; }

    /// <summary>Decodes DW0 of Get Features (reserved bits are ignored; every bit pattern decodes).</summary>
    static abstract TSelf Decode(uint value);

    /// <summary>Encodes the value as CDW11 of Set Features.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A field is outside what the feature encodes; the message names it.</exception>
    uint Encode();

    /// <summary>The fields in words, in the order the spec lists them from the high bits down.</summary>
    IReadOnlyList<FeatureField> Describe();
}

/// <summary>Names and decoding of feature identifiers, for tools that print features (such as <c>vfio nvme get-feature</c>).</summary>
public static class NvmeFeatures
{
    /// <summary>The feature's name as the spec titles it (NVMe 1.4 Figure 271), or null for one not modelled here.</summary>
    public static string? Name(FeatureId fid) => fid switch
    {
        FeatureId.Arbitration => "Arbitration",
        FeatureId.PowerManagement => "Power Management",
        FeatureId.TemperatureThreshold => "Temperature Threshold",
        FeatureId.ErrorRecovery => "Error Recovery",
        FeatureId.VolatileWriteCache => "Volatile Write Cache",
        FeatureId.NumberOfQueues => "Number of Queues",
        FeatureId.InterruptCoalescing => "Interrupt Coalescing",
        FeatureId.InterruptVectorConfiguration => "Interrupt Vector Configuration",
        FeatureId.WriteAtomicityNormal => "Write Atomicity Normal",
        _ => null,
    };

    /// <summary>
    /// The fields of <paramref name="value"/> (DW0 of Get Features for <paramref name="fid"/>) in words; empty for a
    /// feature not modelled here, whose value the caller prints raw.
    /// </summary>
    public static IReadOnlyList<FeatureField> Describe(FeatureId fid, uint value) => fid switch
    {
        FeatureId.Arbitration => ArbitrationFeature.Decode(value).Describe(),
        FeatureId.PowerManagement => PowerManagementFeature.Decode(value).Describe(),
        FeatureId.TemperatureThreshold => TemperatureThresholdFeature.Decode(value).Describe(),
        FeatureId.ErrorRecovery => ErrorRecoveryFeature.Decode(value).Describe(),
        FeatureId.VolatileWriteCache => VolatileWriteCacheFeature.Decode(value).Describe(),
        FeatureId.NumberOfQueues => NumberOfQueuesFeature.Decode(value).Describe(),
        FeatureId.InterruptCoalescing => InterruptCoalescingFeature.Decode(value).Describe(),
        FeatureId.InterruptVectorConfiguration => InterruptVectorConfigurationFeature.Decode(value).Describe(),
        FeatureId.WriteAtomicityNormal => WriteAtomicityNormalFeature.Decode(value).Describe(),
        _ => [],
    };

    /// <summary>The capabilities SEL = 011b reported, in words (one field per bit).</summary>
    public static IReadOnlyList<FeatureField> Describe(FeatureCapabilities capabilities) =>
    [
        new("Saveable", YesNo((capabilities & FeatureCapabilities.Saveable) != 0)),
        new("Namespace specific", YesNo((capabilities & FeatureCapabilities.NamespaceSpecific) != 0)),
        new("Changeable", YesNo((capabilities & FeatureCapabilities.Changeable) != 0)),
    ];

    internal static string YesNo(bool value) => value ? "Yes" : "No";

    internal static string OnOff(bool value) => value ? "Enabled" : "Disabled";

    internal static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

    internal static uint Field(long value, long min, long max, string name, string range)
    {
        if (value < min || value > max) { throw new ArgumentOutOfRangeException(name, value, range); }
        return (uint)value;
    }
}

/// <summary>
/// Arbitration (FID 01h, NVMe 1.4 §5.21.1.1): AB bits 2:0, LPW 15:8, MPW 23:16, HPW 31:24. The weights are given here
/// as counts (1-256); on the wire they are 0's based. The weights matter only under weighted round robin (CC.AMS).
/// </summary>
public readonly record struct ArbitrationFeature : INvmeFeature<ArbitrationFeature>
{
    /// <summary>AB value meaning "no limit".</summary>
    public const int NoBurstLimit = 7;

    /// <summary>AB: the controller takes up to <c>2^AB</c> commands from one submission queue at a time; 7 means no limit.</summary>
    public int BurstExponent { get; init; }
    /// <summary>LPW: commands taken from a low priority queue per round (1-256).</summary>
    public int LowPriorityWeight { get; init; }
    /// <summary>MPW: commands taken from a medium priority queue per round (1-256).</summary>
    public int MediumPriorityWeight { get; init; }
    /// <summary>HPW: commands taken from a high priority queue per round (1-256).</summary>
    public int HighPriorityWeight { get; init; }

    /// <summary>The burst in commands, or null for no limit.</summary>
    public int? Burst => BurstExponent >= NoBurstLimit ? null : 1 << BurstExponent;

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.Arbitration;

    /// <inheritdoc />
    public static ArbitrationFeature Decode(uint value) => new()
    {
        BurstExponent = (int)(value & 7),
        LowPriorityWeight = (int)((value >> 8) & 0xFF) + 1,
        MediumPriorityWeight = (int)((value >> 16) & 0xFF) + 1,
        HighPriorityWeight = (int)(value >> 24) + 1,
    };

    /// <inheritdoc />
    public uint Encode() =>
        NvmeFeatures.Field(BurstExponent, 0, 7, nameof(BurstExponent), "AB is 0-6 (2^AB commands) or 7 (no limit)")
        | (NvmeFeatures.Field(LowPriorityWeight, 1, 256, nameof(LowPriorityWeight), "a weight is 1-256") - 1) << 8
        | (NvmeFeatures.Field(MediumPriorityWeight, 1, 256, nameof(MediumPriorityWeight), "a weight is 1-256") - 1) << 16
        | (NvmeFeatures.Field(HighPriorityWeight, 1, 256, nameof(HighPriorityWeight), "a weight is 1-256") - 1) << 24;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("High Priority Weight (HPW)", NvmeFeatures.Number(HighPriorityWeight)),
        new("Medium Priority Weight (MPW)", NvmeFeatures.Number(MediumPriorityWeight)),
        new("Low Priority Weight (LPW)", NvmeFeatures.Number(LowPriorityWeight)),
        new("Arbitration Burst (AB)", Burst is { } b ? $"{NvmeFeatures.Number(b)} commands" : "No limit"),
    ];
}

/// <summary>Power Management (FID 02h, NVMe 1.4 §5.21.1.2): PS bits 4:0, WH bits 7:5.</summary>
public readonly record struct PowerManagementFeature : INvmeFeature<PowerManagementFeature>
{
    /// <summary>PS: the power state (0 to NPSS of Identify Controller).</summary>
    public int PowerState { get; init; }
    /// <summary>WH: workload hint (0: none, 1: extended idle then burst, 2: heavy sequential writes; others reserved).</summary>
    public int WorkloadHint { get; init; }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.PowerManagement;

    /// <inheritdoc />
    public static PowerManagementFeature Decode(uint value) => new() { PowerState = (int)(value & 0x1F), WorkloadHint = (int)((value >> 5) & 7) };

    /// <inheritdoc />
    public uint Encode() =>
        NvmeFeatures.Field(PowerState, 0, 31, nameof(PowerState), "a power state is 0-31")
        | NvmeFeatures.Field(WorkloadHint, 0, 7, nameof(WorkloadHint), "a workload hint is 0-7") << 5;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Workload Hint (WH)", WorkloadHint switch
        {
            0 => "0 (no workload)",
            1 => "1 (extended idle period with a burst of random writes)",
            2 => "2 (heavy sequential writes)",
            _ => $"{NvmeFeatures.Number(WorkloadHint)} (reserved)",
        }),
        new("Power State (PS)", NvmeFeatures.Number(PowerState)),
    ];
}

/// <summary>THSEL of the Temperature Threshold feature (NVMe 1.4 §5.21.1.4).</summary>
public enum TemperatureThresholdType
{
    /// <summary>00b: over temperature threshold (a warning when the temperature rises above it).</summary>
    Over = 0,
    /// <summary>01b: under temperature threshold (a warning when the temperature falls below it).</summary>
    Under = 1,
}

/// <summary>
/// Temperature Threshold (FID 04h, NVMe 1.4 §5.21.1.4): TMPTH bits 15:0 in Kelvin, TMPSEL bits 19:16 (0 composite,
/// 1-8 temperature sensor 1-8, Fh every sensor, for Set Features only), THSEL bits 21:20. Get Features takes TMPSEL and
/// THSEL in CDW11 to say which of the thresholds it reads.
/// </summary>
public readonly record struct TemperatureThresholdFeature : INvmeFeature<TemperatureThresholdFeature>
{
    /// <summary>TMPSEL value meaning every temperature sensor (Set Features only).</summary>
    public const int AllSensors = 0xF;

    /// <summary>The difference between Kelvin and degrees Celsius.</summary>
    public const double KelvinOffset = 273.15;

    /// <summary>TMPTH: the threshold in Kelvin (0-65535).</summary>
    public int Kelvin { get; init; }
    /// <summary>TMPSEL: 0 for the composite temperature, 1-8 for sensor 1-8, <see cref="AllSensors"/> for all.</summary>
    public int Sensor { get; init; }
    /// <summary>THSEL: over or under threshold.</summary>
    public TemperatureThresholdType Type { get; init; }

    /// <summary>The threshold in degrees Celsius.</summary>
    public double Celsius => Kelvin - KelvinOffset;

    /// <summary>A threshold given in degrees Celsius, rounded to the nearest Kelvin.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The temperature is below absolute zero or above 65535 K.</exception>
    public static TemperatureThresholdFeature FromCelsius(double celsius, int sensor = 0, TemperatureThresholdType type = TemperatureThresholdType.Over)
    {
        double kelvin = Math.Round(celsius + KelvinOffset);
        if (double.IsNaN(kelvin) || kelvin < 0 || kelvin > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(celsius), celsius, "a threshold is -273.15 to 65261.85 °C (0-65535 K)");
        }
        return new TemperatureThresholdFeature { Kelvin = (int)kelvin, Sensor = sensor, Type = type };
    }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.TemperatureThreshold;

    /// <inheritdoc />
    public static TemperatureThresholdFeature Decode(uint value) => new()
    {
        Kelvin = (int)(value & 0xFFFF),
        Sensor = (int)((value >> 16) & 0xF),
        Type = (TemperatureThresholdType)((value >> 20) & 3),
    };

    /// <inheritdoc />
    public uint Encode()
    {
        if (Sensor is not ((>= 0 and <= 8) or AllSensors))
        {
            throw new ArgumentOutOfRangeException(nameof(Sensor), Sensor, "TMPSEL is 0 (composite), 1-8 (sensor 1-8) or 15 (all sensors)");
        }
        return NvmeFeatures.Field(Kelvin, 0, ushort.MaxValue, nameof(Kelvin), "TMPTH is 0-65535 K")
            | (uint)Sensor << 16
            | NvmeFeatures.Field((int)Type, 0, 1, nameof(Type), "THSEL is Over (0) or Under (1)") << 20;
    }

    /// <summary>CDW11 of a Get Features that reads this threshold: TMPSEL and THSEL, TMPTH 0.</summary>
    public uint EncodeSelection() => Encode() & ~0xFFFFu;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Threshold Type Select (THSEL)", Type switch
        {
            TemperatureThresholdType.Over => "0 (over temperature threshold)",
            TemperatureThresholdType.Under => "1 (under temperature threshold)",
            _ => $"{NvmeFeatures.Number((int)Type)} (reserved)",
        }),
        new("Threshold Temperature Select (TMPSEL)", Sensor switch
        {
            0 => "0 (composite temperature)",
            >= 1 and <= 8 => $"{NvmeFeatures.Number(Sensor)} (temperature sensor {NvmeFeatures.Number(Sensor)})",
            AllSensors => "15 (all temperature sensors)",
            _ => $"{NvmeFeatures.Number(Sensor)} (reserved)",
        }),
        new("Temperature Threshold (TMPTH)", string.Create(CultureInfo.InvariantCulture, $"{Kelvin} K ({Celsius:0.##} °C)")),
    ];
}

/// <summary>Error Recovery (FID 05h, NVMe 1.4 §5.21.1.5): TLER bits 15:0 in 100 ms units, DULBE bit 16. Namespace specific.</summary>
public readonly record struct ErrorRecoveryFeature : INvmeFeature<ErrorRecoveryFeature>
{
    /// <summary>TLER: the most time the controller spends recovering a read or write, in 100 ms units (0: no limit).</summary>
    public int TimeLimitUnits { get; init; }
    /// <summary>DULBE: reads of deallocated or unwritten blocks fail with an error instead of returning data.</summary>
    public bool DeallocatedOrUnwrittenBlockError { get; init; }

    /// <summary>TLER as a time span (zero: no limit).</summary>
    public TimeSpan TimeLimit => TimeSpan.FromMilliseconds(TimeLimitUnits * 100L);

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.ErrorRecovery;

    /// <inheritdoc />
    public static ErrorRecoveryFeature Decode(uint value) => new()
    {
        TimeLimitUnits = (int)(value & 0xFFFF),
        DeallocatedOrUnwrittenBlockError = (value & (1u << 16)) != 0,
    };

    /// <inheritdoc />
    public uint Encode() =>
        NvmeFeatures.Field(TimeLimitUnits, 0, ushort.MaxValue, nameof(TimeLimitUnits), "TLER is 0-65535 units of 100 ms")
        | (DeallocatedOrUnwrittenBlockError ? 1u << 16 : 0);

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Deallocated or Unwritten Logical Block Error Enable (DULBE)", NvmeFeatures.OnOff(DeallocatedOrUnwrittenBlockError)),
        new("Time Limited Error Recovery (TLER)", TimeLimitUnits == 0 ? "0 (no limit)" : $"{NvmeFeatures.Number(TimeLimitUnits * 100L)} ms"),
    ];
}

/// <summary>Volatile Write Cache (FID 06h, NVMe 1.4 §5.21.1.6): WCE bit 0. Only when Identify Controller VWC bit 0 is set.</summary>
public readonly record struct VolatileWriteCacheFeature : INvmeFeature<VolatileWriteCacheFeature>
{
    /// <summary>WCE: the volatile write cache is enabled.</summary>
    public bool Enabled { get; init; }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.VolatileWriteCache;

    /// <inheritdoc />
    public static VolatileWriteCacheFeature Decode(uint value) => new() { Enabled = (value & 1) != 0 };

    /// <inheritdoc />
    public uint Encode() => Enabled ? 1u : 0u;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() => [new("Volatile Write Cache Enable (WCE)", NvmeFeatures.OnOff(Enabled))];
}

/// <summary>
/// Number of Queues (FID 07h, NVMe 1.4 §5.21.1.7): NSQR bits 15:0 and NCQR 31:16, both 0's based on the wire, counts
/// here. In Set Features they ask; in the completion (and Get Features) they are what was allocated.
/// </summary>
public readonly record struct NumberOfQueuesFeature : INvmeFeature<NumberOfQueuesFeature>
{
    /// <summary>I/O submission queues (1-65535).</summary>
    public int SubmissionQueues { get; init; }
    /// <summary>I/O completion queues (1-65535).</summary>
    public int CompletionQueues { get; init; }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.NumberOfQueues;

    /// <inheritdoc />
    public static NumberOfQueuesFeature Decode(uint value) => new()
    {
        SubmissionQueues = (int)(value & 0xFFFF) + 1,
        CompletionQueues = (int)(value >> 16) + 1,
    };

    /// <inheritdoc />
    public uint Encode() =>
        // 65535 is the 0's based limit: FFFFh (65536 queues) is invalid for both fields (§5.21.1.7).
        (NvmeFeatures.Field(SubmissionQueues, 1, 65535, nameof(SubmissionQueues), "1-65535 queues") - 1)
        | (NvmeFeatures.Field(CompletionQueues, 1, 65535, nameof(CompletionQueues), "1-65535 queues") - 1) << 16;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Number of I/O Completion Queues Allocated (NCQA)", NvmeFeatures.Number(CompletionQueues)),
        new("Number of I/O Submission Queues Allocated (NSQA)", NvmeFeatures.Number(SubmissionQueues)),
    ];
}

/// <summary>
/// Interrupt Coalescing (FID 08h, NVMe 1.4 §5.21.1.8): THR bits 7:0 (0's based entries), TIME bits 15:8 in 100 µs
/// units. The admin completion queue is never coalesced.
/// </summary>
public readonly record struct InterruptCoalescingFeature : INvmeFeature<InterruptCoalescingFeature>
{
    /// <summary>THR: completions gathered before an interrupt (1-256).</summary>
    public int AggregationThreshold { get; init; }
    /// <summary>TIME: the longest an interrupt is delayed, in 100 µs units (0-255; 0: no delay).</summary>
    public int AggregationTimeUnits { get; init; }

    /// <summary>TIME as a time span.</summary>
    public TimeSpan AggregationTime => TimeSpan.FromMicroseconds(AggregationTimeUnits * 100L);

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.InterruptCoalescing;

    /// <inheritdoc />
    public static InterruptCoalescingFeature Decode(uint value) => new()
    {
        AggregationThreshold = (int)(value & 0xFF) + 1,
        AggregationTimeUnits = (int)((value >> 8) & 0xFF),
    };

    /// <inheritdoc />
    public uint Encode() =>
        (NvmeFeatures.Field(AggregationThreshold, 1, 256, nameof(AggregationThreshold), "THR is 1-256 completions") - 1)
        | NvmeFeatures.Field(AggregationTimeUnits, 0, 255, nameof(AggregationTimeUnits), "TIME is 0-255 units of 100 µs") << 8;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Aggregation Time (TIME)", $"{NvmeFeatures.Number(AggregationTimeUnits * 100L)} µs"),
        new("Aggregation Threshold (THR)", $"{NvmeFeatures.Number(AggregationThreshold)} completions"),
    ];
}

/// <summary>
/// Interrupt Vector Configuration (FID 09h, NVMe 1.4 §5.21.1.9): IV bits 15:0, CD bit 16. Get Features takes IV in
/// CDW11 to say which vector it reads.
/// </summary>
public readonly record struct InterruptVectorConfigurationFeature : INvmeFeature<InterruptVectorConfigurationFeature>
{
    /// <summary>IV: the MSI-X (or MSI) vector the setting is for.</summary>
    public int Vector { get; init; }
    /// <summary>CD: interrupt coalescing is off for this vector.</summary>
    public bool CoalescingDisabled { get; init; }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.InterruptVectorConfiguration;

    /// <inheritdoc />
    public static InterruptVectorConfigurationFeature Decode(uint value) => new()
    {
        Vector = (int)(value & 0xFFFF),
        CoalescingDisabled = (value & (1u << 16)) != 0,
    };

    /// <inheritdoc />
    public uint Encode() =>
        NvmeFeatures.Field(Vector, 0, ushort.MaxValue, nameof(Vector), "IV is 0-65535") | (CoalescingDisabled ? 1u << 16 : 0);

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() =>
    [
        new("Coalescing Disable (CD)", NvmeFeatures.YesNo(CoalescingDisabled)),
        new("Interrupt Vector (IV)", NvmeFeatures.Number(Vector)),
    ];
}

/// <summary>Write Atomicity Normal (FID 0Ah, NVMe 1.4 §5.21.1.10): DN bit 0.</summary>
public readonly record struct WriteAtomicityNormalFeature : INvmeFeature<WriteAtomicityNormalFeature>
{
    /// <summary>DN: the host promises to stay within AWUPF, so the controller need only honour that (not AWUN/NAWUN).</summary>
    public bool DisableNormal { get; init; }

    /// <inheritdoc />
    public static FeatureId Id => FeatureId.WriteAtomicityNormal;

    /// <inheritdoc />
    public static WriteAtomicityNormalFeature Decode(uint value) => new() { DisableNormal = (value & 1) != 0 };

    /// <inheritdoc />
    public uint Encode() => DisableNormal ? 1u : 0u;

    /// <inheritdoc />
    public IReadOnlyList<FeatureField> Describe() => [new("Disable Normal (DN)", NvmeFeatures.YesNo(DisableNormal))];
}

public partial struct NvmeCommand
{
    /// <summary>
    /// Get Features (NVMe 1.4 §5.13): FID in CDW10 bits 7:0, SEL bits 10:8; CDW11 carries what some features need to
    /// know which value to return (Temperature Threshold's TMPSEL/THSEL, Interrupt Vector Configuration's IV).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="select"/> is not 0-3.</exception>
    public static NvmeCommand GetFeatures(FeatureId fid, FeatureSelect select = FeatureSelect.Current, uint nsid = 0, uint cdw11 = 0)
    {
        if ((uint)select > 3) { throw new ArgumentOutOfRangeException(nameof(select), select, "SEL is Current, Default, Saved or Supported (0-3)"); }
        var c = Make((byte)AdminOpcode.GetFeatures, nsid);
        c.Cdw10 = (byte)fid | (uint)select << 8;
        c.Cdw11 = cdw11;
        return c;
    }

    /// <summary>
    /// Set Features (NVMe 1.4 §5.21): FID in CDW10 bits 7:0, SV (save across resets) bit 31; the value in CDW11 and,
    /// for features that have more, CDW12-15.
    /// </summary>
    public static NvmeCommand SetFeatures(FeatureId fid, bool save, uint nsid, uint cdw11, uint cdw12 = 0, uint cdw13 = 0, uint cdw14 = 0, uint cdw15 = 0)
    {
        var c = Make((byte)AdminOpcode.SetFeatures, nsid);
        c.Cdw10 = (byte)fid | (save ? 1u << 31 : 0);
        c.Cdw11 = cdw11;
        c.Cdw12 = cdw12;
        c.Cdw13 = cdw13;
        c.Cdw14 = cdw14;
        c.Cdw15 = cdw15;
        return c;
    }
}
