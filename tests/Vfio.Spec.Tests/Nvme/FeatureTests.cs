using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// Get/Set Features and firmware commands against NVMe Base 1.4: the command dwords (§5.11, §5.12, §5.13, §5.21), the
/// value layouts of features 01h-0Ah (§5.21.1.1-10), FRMW and FWUG (Figure 247), and the decoded fields.
/// </summary>
public sealed class FeatureTests
{
    [Fact]
    public void GetFeaturesPutsFidAndSelectInCdw10()
    {
        var c = NvmeCommand.GetFeatures(FeatureId.TemperatureThreshold, FeatureSelect.Saved, nsid: 1, cdw11: 0x0012_0000);
        Assert.Equal((byte)AdminOpcode.GetFeatures, c.Opcode);
        Assert.Equal(0x0000_0204u, c.Cdw10);
        Assert.Equal(0x0012_0000u, c.Cdw11);
        Assert.Equal(1u, c.Nsid);
        Assert.Equal(0x0000_0306u, NvmeCommand.GetFeatures(FeatureId.VolatileWriteCache, FeatureSelect.Supported).Cdw10);
        Assert.Equal("select", Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.GetFeatures(FeatureId.Arbitration, (FeatureSelect)4)).ParamName);
    }

    [Fact]
    public void SetFeaturesPutsSaveInBit31()
    {
        var c = NvmeCommand.SetFeatures(FeatureId.Arbitration, save: true, nsid: 0, cdw11: 0xFF01_0003, cdw12: 5);
        Assert.Equal((byte)AdminOpcode.SetFeatures, c.Opcode);
        Assert.Equal(0x8000_0001u, c.Cdw10);
        Assert.Equal(0xFF01_0003u, c.Cdw11);
        Assert.Equal(5u, c.Cdw12);
        Assert.Equal(0x0000_0006u, NvmeCommand.SetFeatures(FeatureId.VolatileWriteCache, save: false, nsid: 0, cdw11: 1).Cdw10);
    }

    [Fact]
    public void FeatureIdentifiersAreTheSpecsValues()
    {
        Assert.Equal(new byte[] { 1, 2, 4, 5, 6, 7, 8, 9, 0x0A },
            new[] { FeatureId.Arbitration, FeatureId.PowerManagement, FeatureId.TemperatureThreshold, FeatureId.ErrorRecovery,
                FeatureId.VolatileWriteCache, FeatureId.NumberOfQueues, FeatureId.InterruptCoalescing,
                FeatureId.InterruptVectorConfiguration, FeatureId.WriteAtomicityNormal }.Select(f => (byte)f));
        Assert.Equal(0x10, (int)AdminOpcode.FirmwareCommit);
        Assert.Equal(0x11, (int)AdminOpcode.FirmwareImageDownload);
        Assert.Equal(7u, (uint)(FeatureCapabilities.Saveable | FeatureCapabilities.NamespaceSpecific | FeatureCapabilities.Changeable));
        Assert.Equal(4u, (uint)FeatureCapabilities.Changeable);
    }

    [Fact]
    public void ValuesEncodeToTheSpecsBitPositions()
    {
        Assert.Equal(0xFF01_0003u, new ArbitrationFeature { BurstExponent = 3, LowPriorityWeight = 1, MediumPriorityWeight = 2, HighPriorityWeight = 256 }.Encode());
        Assert.Equal(0x0000_0045u, new PowerManagementFeature { PowerState = 5, WorkloadHint = 2 }.Encode());
        Assert.Equal(0x0012_0157u, new TemperatureThresholdFeature { Kelvin = 343, Sensor = 2, Type = TemperatureThresholdType.Under }.Encode());
        Assert.Equal(0x0012_0000u, new TemperatureThresholdFeature { Kelvin = 343, Sensor = 2, Type = TemperatureThresholdType.Under }.EncodeSelection());
        Assert.Equal(0x000F_0100u, new TemperatureThresholdFeature { Kelvin = 256, Sensor = TemperatureThresholdFeature.AllSensors }.Encode());
        Assert.Equal(0x0001_0064u, new ErrorRecoveryFeature { TimeLimitUnits = 100, DeallocatedOrUnwrittenBlockError = true }.Encode());
        Assert.Equal(1u, new VolatileWriteCacheFeature { Enabled = true }.Encode());
        Assert.Equal(0x0003_0007u, new NumberOfQueuesFeature { SubmissionQueues = 8, CompletionQueues = 4 }.Encode());
        Assert.Equal(0x0000_0A09u, new InterruptCoalescingFeature { AggregationThreshold = 10, AggregationTimeUnits = 10 }.Encode());
        Assert.Equal(0x0001_0003u, new InterruptVectorConfigurationFeature { Vector = 3, CoalescingDisabled = true }.Encode());
        Assert.Equal(1u, new WriteAtomicityNormalFeature { DisableNormal = true }.Encode());
    }

    [Fact]
    public void DecodeIgnoresReservedBitsAndTakesEveryPattern()
    {
        var arbitration = ArbitrationFeature.Decode(0xFFFF_FFFF);
        Assert.Equal(7, arbitration.BurstExponent);
        Assert.Null(arbitration.Burst);
        Assert.Equal(256, arbitration.HighPriorityWeight);
        Assert.Equal(new PowerManagementFeature { PowerState = 31, WorkloadHint = 7 }, PowerManagementFeature.Decode(0xFFFF_FFFF));
        Assert.Equal(65536, NumberOfQueuesFeature.Decode(0xFFFF_FFFF).SubmissionQueues);
        Assert.Equal(256, InterruptCoalescingFeature.Decode(0xFFFF_FFFF).AggregationThreshold);
        Assert.Equal(TimeSpan.FromMicroseconds(25500), InterruptCoalescingFeature.Decode(0xFFFF_FFFF).AggregationTime);
        Assert.Equal(TimeSpan.FromMilliseconds(6553500), ErrorRecoveryFeature.Decode(0xFFFF_FFFF).TimeLimit);
        Assert.True(VolatileWriteCacheFeature.Decode(0xFFFF_FFFF).Enabled);
    }

    [Fact]
    public void EveryValidValueRoundTrips()
    {
        var random = new Random(17);
        for (int i = 0; i < 500; i++)
        {
            uint v = (uint)random.NextInt64(0, 1L << 32);
            RoundTrip<ArbitrationFeature>(v & 0xFFFF_FF07);
            RoundTrip<PowerManagementFeature>(v & 0xFF);
            RoundTrip<ErrorRecoveryFeature>(v & 0x1_FFFF);
            RoundTrip<VolatileWriteCacheFeature>(v & 1);
            RoundTrip<InterruptCoalescingFeature>(v & 0xFFFF);
            RoundTrip<InterruptVectorConfigurationFeature>(v & 0x1_FFFF);
            RoundTrip<WriteAtomicityNormalFeature>(v & 1);
            uint t = v & 0x30_FFFF | (uint)random.Next(0, 9) << 16;
            RoundTrip<TemperatureThresholdFeature>(t & ~(2u << 20));
            uint q = v & 0xFFFE_FFFE;   // both fields below FFFFh
            RoundTrip<NumberOfQueuesFeature>(q);
        }
    }

    private static void RoundTrip<T>(uint value) where T : INvmeFeature<T>
    {
        var decoded = T.Decode(value);
        Assert.Equal(value, decoded.Encode());
        Assert.Equal(decoded, T.Decode(decoded.Encode()));
    }

    [Fact]
    public void OutOfRangeFieldsAreNamed()
    {
        Assert.Equal("BurstExponent", Assert.Throws<ArgumentOutOfRangeException>(() => new ArbitrationFeature { BurstExponent = 8, LowPriorityWeight = 1, MediumPriorityWeight = 1, HighPriorityWeight = 1 }.Encode()).ParamName);
        Assert.Equal("HighPriorityWeight", Assert.Throws<ArgumentOutOfRangeException>(() => new ArbitrationFeature { LowPriorityWeight = 1, MediumPriorityWeight = 1, HighPriorityWeight = 257 }.Encode()).ParamName);
        Assert.Equal("PowerState", Assert.Throws<ArgumentOutOfRangeException>(() => new PowerManagementFeature { PowerState = 32 }.Encode()).ParamName);
        Assert.Equal("Kelvin", Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureThresholdFeature { Kelvin = 65536 }.Encode()).ParamName);
        Assert.Equal("Kelvin", Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureThresholdFeature { Kelvin = -1 }.Encode()).ParamName);
        Assert.Equal("Sensor", Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureThresholdFeature { Sensor = 9 }.Encode()).ParamName);
        Assert.Equal("Type", Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureThresholdFeature { Type = (TemperatureThresholdType)3 }.Encode()).ParamName);
        Assert.Equal("TimeLimitUnits", Assert.Throws<ArgumentOutOfRangeException>(() => new ErrorRecoveryFeature { TimeLimitUnits = 65536 }.Encode()).ParamName);
        Assert.Equal("SubmissionQueues", Assert.Throws<ArgumentOutOfRangeException>(() => new NumberOfQueuesFeature { SubmissionQueues = 65536, CompletionQueues = 1 }.Encode()).ParamName);
        Assert.Equal("AggregationThreshold", Assert.Throws<ArgumentOutOfRangeException>(() => new InterruptCoalescingFeature().Encode()).ParamName);
        Assert.Equal("AggregationTimeUnits", Assert.Throws<ArgumentOutOfRangeException>(() => new InterruptCoalescingFeature { AggregationThreshold = 1, AggregationTimeUnits = 256 }.Encode()).ParamName);
        Assert.Equal("Vector", Assert.Throws<ArgumentOutOfRangeException>(() => new InterruptVectorConfigurationFeature { Vector = 65536 }.Encode()).ParamName);
    }

    [Fact]
    public void CelsiusAndKelvin()
    {
        var t = TemperatureThresholdFeature.FromCelsius(70);
        Assert.Equal(343, t.Kelvin);
        Assert.Equal(69.85, t.Celsius, 6);
        Assert.Equal(0, TemperatureThresholdFeature.FromCelsius(-273.15).Kelvin);
        Assert.Throws<ArgumentOutOfRangeException>(() => TemperatureThresholdFeature.FromCelsius(-274));
        Assert.Throws<ArgumentOutOfRangeException>(() => TemperatureThresholdFeature.FromCelsius(70000));
        Assert.Throws<ArgumentOutOfRangeException>(() => TemperatureThresholdFeature.FromCelsius(double.NaN));
    }

    [Fact]
    public void FieldsAreDescribedInWords()
    {
        Assert.Equal(["Volatile Write Cache Enable (WCE): Disabled"], NvmeFeatures.Describe(FeatureId.VolatileWriteCache, 0).Select(f => f.ToString()));
        Assert.Equal(
            ["High Priority Weight (HPW): 256", "Medium Priority Weight (MPW): 2", "Low Priority Weight (LPW): 1", "Arbitration Burst (AB): No limit"],
            NvmeFeatures.Describe(FeatureId.Arbitration, 0xFF01_0007).Select(f => f.ToString()));
        Assert.Contains(NvmeFeatures.Describe(FeatureId.Arbitration, 3), f => f.Value == "8 commands");
        Assert.Equal(
            ["Threshold Type Select (THSEL): 1 (under temperature threshold)", "Threshold Temperature Select (TMPSEL): 2 (temperature sensor 2)",
                "Temperature Threshold (TMPTH): 273 K (-0.15 °C)"],
            NvmeFeatures.Describe(FeatureId.TemperatureThreshold, 0x0012_0111).Select(f => f.ToString()));
        Assert.Contains(NvmeFeatures.Describe(FeatureId.ErrorRecovery, 0x0001_0005), f => f.ToString() == "Time Limited Error Recovery (TLER): 500 ms");
        Assert.Contains(NvmeFeatures.Describe(FeatureId.NumberOfQueues, 0x0003_0007), f => f.ToString() == "Number of I/O Submission Queues Allocated (NSQA): 8");
        Assert.Contains(NvmeFeatures.Describe(FeatureId.InterruptCoalescing, 0x0000_0A09), f => f.ToString() == "Aggregation Time (TIME): 1000 µs");
        Assert.Contains(NvmeFeatures.Describe(FeatureId.InterruptVectorConfiguration, 0x0001_0003), f => f.ToString() == "Coalescing Disable (CD): Yes");
        Assert.Single(NvmeFeatures.Describe(FeatureId.WriteAtomicityNormal, 1));
        Assert.Equal(2, NvmeFeatures.Describe(FeatureId.PowerManagement, 0x45).Count);
        Assert.Empty(NvmeFeatures.Describe((FeatureId)0x7F, 1));
        Assert.Null(NvmeFeatures.Name((FeatureId)0x7F));
        Assert.Equal("Temperature Threshold", NvmeFeatures.Name(FeatureId.TemperatureThreshold));
        Assert.Equal(["Saveable: Yes", "Namespace specific: No", "Changeable: Yes"],
            NvmeFeatures.Describe(FeatureCapabilities.Saveable | FeatureCapabilities.Changeable).Select(f => f.ToString()));
    }

    [Fact]
    public void FirmwareCommandsLayOutTheirDwords()
    {
        var commit = NvmeCommand.FirmwareCommit(2, FirmwareCommitAction.ReplaceAndActivateNow);
        Assert.Equal((byte)AdminOpcode.FirmwareCommit, commit.Opcode);
        Assert.Equal(2u | 3u << 3, commit.Cdw10);
        Assert.Equal(0x8000_0038u, NvmeCommand.FirmwareCommit(0, FirmwareCommitAction.ActivateBootPartition, 1).Cdw10);
        Assert.Equal("slot", Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FirmwareCommit(8, FirmwareCommitAction.Replace)).ParamName);
        Assert.Equal("action", Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FirmwareCommit(1, (FirmwareCommitAction)5)).ParamName);
        Assert.Equal("bootPartitionId", Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FirmwareCommit(1, FirmwareCommitAction.Replace, 2)).ParamName);

        var download = NvmeCommand.FirmwareImageDownload(dwordOffset: 1024, dwords: 1024);
        Assert.Equal((byte)AdminOpcode.FirmwareImageDownload, download.Opcode);
        Assert.Equal(1023u, download.Cdw10);   // NUMD is 0's based
        Assert.Equal(1024u, download.Cdw11);
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FirmwareImageDownload(0, 0));
    }

    [Fact]
    public void FrmwAndFwugAreReadFromIdentifyController()
    {
        var raw = IdentifyTests.QemuController();
        raw[260] = 0x17;                 // activation without reset, 3 slots, slot 1 read-only
        raw[319] = 2;
        var id = IdentifyController.Parse(raw);
        Assert.True(id.FirmwareUpdates.Slot1ReadOnly);
        Assert.Equal(3, id.FirmwareUpdates.SlotCount);
        Assert.True(id.FirmwareUpdates.ActivationWithoutReset);
        Assert.Equal(8192, id.FirmwareUpdateGranularity);
        raw[319] = 0xFF;
        Assert.Null(IdentifyController.Parse(raw).FirmwareUpdateGranularity);
        raw[319] = 0;
        raw[260] = 0x0E;
        id = IdentifyController.Parse(raw);
        Assert.Null(id.FirmwareUpdateGranularity);
        Assert.Equal(7, id.FirmwareUpdates.SlotCount);
        Assert.False(id.FirmwareUpdates.Slot1ReadOnly);
    }

    [Fact]
    public void FeatureAndFirmwareStatusesHaveNames()
    {
        Assert.Equal("Feature Identifier Not Saveable", NvmeStatus.Create(CommandSpecificStatusCode.FeatureIdentifierNotSaveable).Name);
        Assert.Equal("Feature Not Changeable", NvmeStatus.Create(CommandSpecificStatusCode.FeatureNotChangeable).Name);
        Assert.Equal("Feature Not Namespace Specific", NvmeStatus.Create(CommandSpecificStatusCode.FeatureNotNamespaceSpecific).Name);
        Assert.Equal("Invalid Firmware Slot", NvmeStatus.Create(CommandSpecificStatusCode.InvalidFirmwareSlot).Name);
        Assert.Equal("Invalid Firmware Image", NvmeStatus.Create(CommandSpecificStatusCode.InvalidFirmwareImage).Name);
        Assert.Equal("Overlapping Range", NvmeStatus.Create(CommandSpecificStatusCode.OverlappingRange).Name);
        Assert.Equal(0x0D, (int)CommandSpecificStatusCode.FeatureIdentifierNotSaveable);
        Assert.Equal(0x0B, (int)CommandSpecificStatusCode.FirmwareActivationRequiresConventionalReset);
        Assert.Equal(0x11, (int)CommandSpecificStatusCode.FirmwareActivationRequiresControllerLevelReset);
    }
}
