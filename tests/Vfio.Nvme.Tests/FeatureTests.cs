using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// Get and Set Features (NVMe 1.4 §5.13, §5.21) through the driver against the model's feature store: round trips,
/// the default/saved/supported selects, saved values loaded at reset, and what the driver refuses before the device.
/// </summary>
public sealed class FeatureTests
{
    private const OptionalNvmCommands Saving = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement | OptionalNvmCommands.SaveAndSelect;

    private static EmulatedNvme New(bool saving = true, NvmeTransport transport = NvmeTransport.InProcess) =>
        new(transport, new NvmeDeviceOptions { Oncs = saving ? Saving : new NvmeDeviceOptions().Oncs });

    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    /// <summary>The controller still answers: an Identify after a refused call (the brief's rule for every bad input).</summary>
    private static void StillAnswers(NvmeController ctrl) =>
        Assert.Equal(ctrl.Identity.SerialNumber, IdentifyController.Parse(ctrl.Identify(IdentifyCns.Controller, 0)).SerialNumber);

    [Fact]
    public void EveryChangeableFeatureRoundTripsFromSetToGetCurrent()
    {
        using var dev = New();
        using var ctrl = Open(dev);

        var arbitration = new ArbitrationFeature { BurstExponent = 3, LowPriorityWeight = 2, MediumPriorityWeight = 17, HighPriorityWeight = 256 };
        ctrl.SetFeature(arbitration);
        Assert.Equal(arbitration, ctrl.GetFeature<ArbitrationFeature>());
        Assert.Equal(8, ctrl.GetFeature<ArbitrationFeature>().Burst);

        var power = new PowerManagementFeature { PowerState = 0, WorkloadHint = 2 };
        ctrl.SetFeature(power);
        Assert.Equal(power, ctrl.GetFeature<PowerManagementFeature>());

        ctrl.SetTemperatureThreshold(280, sensor: 3, TemperatureThresholdType.Under);
        ctrl.SetTemperatureThreshold(350);
        Assert.Equal(280, ctrl.GetTemperatureThreshold(3, TemperatureThresholdType.Under).Kelvin);
        Assert.Equal(350, ctrl.GetTemperatureThreshold().Kelvin);
        Assert.Equal(NvmeDevice.DefaultOverTemperatureThreshold, ctrl.GetTemperatureThreshold(3).Kelvin);   // another sensor: untouched

        var recovery = new ErrorRecoveryFeature { TimeLimitUnits = 50 };
        ctrl.SetFeature(recovery, nsid: 1);
        Assert.Equal(recovery, ctrl.GetFeature<ErrorRecoveryFeature>(nsid: 1));
        Assert.Equal(TimeSpan.FromSeconds(5), ctrl.GetFeature<ErrorRecoveryFeature>(nsid: 1).TimeLimit);

        ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = false });
        Assert.False(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);

        var coalescing = new InterruptCoalescingFeature { AggregationThreshold = 10, AggregationTimeUnits = 5 };
        ctrl.SetFeature(coalescing);
        Assert.Equal(coalescing, ctrl.GetFeature<InterruptCoalescingFeature>());

        ctrl.SetFeature(new InterruptVectorConfigurationFeature { Vector = 2, CoalescingDisabled = true });
        Assert.True(ctrl.GetInterruptVectorConfiguration(2).CoalescingDisabled);
        Assert.False(ctrl.GetInterruptVectorConfiguration(3).CoalescingDisabled);
        Assert.True(ctrl.GetInterruptVectorConfiguration(0).CoalescingDisabled);   // the admin vector is never coalesced

        // The raw call sees the same dword.
        Assert.Equal(arbitration.Encode(), ctrl.GetFeature(FeatureId.Arbitration));
        StillAnswers(ctrl);
    }

    [Fact]
    public void TemperatureThresholdForAllSensorsSetsEachOne()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        ctrl.SetTemperatureThreshold(330, TemperatureThresholdFeature.AllSensors);
        for (int sensor = 0; sensor <= 8; sensor++) { Assert.Equal(330, ctrl.GetTemperatureThreshold(sensor).Kelvin); }
        Assert.Equal(0, ctrl.GetTemperatureThreshold(5, TemperatureThresholdType.Under).Kelvin);
        Assert.Equal(330 - TemperatureThresholdFeature.KelvinOffset, ctrl.GetTemperatureThreshold(8).Celsius, 6);
    }

    [Fact]
    public void NumberOfQueuesReadsWhatWasGranted()
    {
        using var dev = New(saving: false);
        using var ctrl = Open(dev);
        var queues = ctrl.GetFeature<NumberOfQueuesFeature>();
        Assert.Equal(ctrl.GrantedIoQueues, queues.SubmissionQueues);
        Assert.Equal(ctrl.GrantedIoQueues, queues.CompletionQueues);
    }

    [Fact]
    public void SettingNumberOfQueuesIsRefusedByTheDriverWithTheReason()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        var typed = Assert.Throws<ArgumentException>(() => ctrl.SetFeature(new NumberOfQueuesFeature { SubmissionQueues = 2, CompletionQueues = 2 }));
        Assert.Equal("fid", typed.ParamName);
        Assert.Contains("once per controller enable", typed.Message);
        Assert.Contains("MaxIoQueues", typed.Message);
        Assert.Throws<ArgumentException>(() => ctrl.SetFeature(FeatureId.NumberOfQueues, 0x0001_0001));
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        using var queue = ctrl.CreateIoQueue();   // the driver's bookkeeping is intact
        StillAnswers(ctrl);
    }

    [Fact]
    public void DefaultSavedAndSupportedSelects()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = false });
        Assert.False(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>(FeatureSelect.Default).Enabled);
        // Nothing saved: Saved reads the default (§5.13, SEL 010b).
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>(FeatureSelect.Saved).Enabled);
        Assert.Equal(NvmeDevice.DefaultOverTemperatureThreshold, ctrl.GetTemperatureThreshold(select: FeatureSelect.Default).Kelvin);
        Assert.Equal(0, ctrl.GetTemperatureThreshold(0, TemperatureThresholdType.Under, FeatureSelect.Default).Kelvin);

        Assert.Equal(FeatureCapabilities.Saveable | FeatureCapabilities.Changeable, ctrl.GetFeatureCapabilities(FeatureId.VolatileWriteCache));
        Assert.Equal(FeatureCapabilities.Saveable | FeatureCapabilities.Changeable | FeatureCapabilities.NamespaceSpecific,
            ctrl.GetFeatureCapabilities(FeatureId.ErrorRecovery, nsid: 1));
        Assert.Equal(FeatureCapabilities.Changeable, ctrl.GetFeatureCapabilities(FeatureId.NumberOfQueues));
        Assert.Equal(FeatureCapabilities.None, ctrl.GetFeatureCapabilities(FeatureId.WriteAtomicityNormal));
        // Supported is for GetFeatureCapabilities; the typed getters take values only.
        Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetFeature<ArbitrationFeature>(FeatureSelect.Supported));
        StillAnswers(ctrl);
    }

    [Fact]
    public void ASavedValueIsCurrentAfterAResetAndAnUnsavedOneIsNot()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        var saved = new ArbitrationFeature { BurstExponent = 2, LowPriorityWeight = 4, MediumPriorityWeight = 8, HighPriorityWeight = 16 };
        ctrl.SetFeature(saved, save: true);
        ctrl.SetTemperatureThreshold(360, sensor: 1, save: true);
        ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = false });
        // After the save, a current-only change: the reset brings back the saved value, not this one.
        ctrl.SetFeature(saved with { BurstExponent = 5 });
        Assert.Equal(saved, ctrl.GetFeature<ArbitrationFeature>(FeatureSelect.Saved));

        ctrl.Reset();

        Assert.Equal(saved, ctrl.GetFeature<ArbitrationFeature>());
        Assert.Equal(360, ctrl.GetTemperatureThreshold(1).Kelvin);
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);      // never saved: back to the default
        Assert.Equal(1, dev.Model.ControllerResets);
        StillAnswers(ctrl);
    }

    [Fact]
    public void SaveAndSelectWithoutOncsBit4AreRefusedBeforeTheDevice()
    {
        using var dev = New(saving: false);
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        var save = Assert.Throws<ArgumentException>(() => ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = true }, save: true));
        Assert.Equal("save", save.ParamName);
        Assert.Contains("ONCS", save.Message);
        Assert.Throws<ArgumentException>(() => ctrl.SetFeature(FeatureId.Arbitration, 0, save: true));
        var select = Assert.Throws<ArgumentException>(() => ctrl.GetFeature<ArbitrationFeature>(FeatureSelect.Saved));
        Assert.Equal("select", select.ParamName);
        Assert.Contains("ONCS", select.Message);
        Assert.Throws<ArgumentException>(() => ctrl.GetFeatureCapabilities(FeatureId.Arbitration));
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);   // current still reads
        StillAnswers(ctrl);
    }

    [Fact]
    public void TheModelAnswersNotSaveableWhenTheDriverIsBypassed()
    {
        using var dev = New(saving: false);
        using var ctrl = Open(dev);
        var e = Assert.Throws<NvmeCommandException>(() =>
            ctrl.ExecuteAdmin(NvmeCommand.SetFeatures(FeatureId.VolatileWriteCache, save: true, nsid: 0, cdw11: 1)));
        Assert.Equal(StatusCodeType.CommandSpecific, e.StatusCodeType);
        Assert.Equal((byte)CommandSpecificStatusCode.FeatureIdentifierNotSaveable, e.StatusCode);
        Assert.Contains("Feature Identifier Not Saveable", e.Message);
        // SEL other than current is reserved without ONCS bit 4: Invalid Field.
        var sel = Assert.Throws<NvmeCommandException>(() => ctrl.ExecuteAdmin(NvmeCommand.GetFeatures(FeatureId.VolatileWriteCache, FeatureSelect.Supported)));
        Assert.Equal((byte)GenericStatusCode.InvalidField, sel.StatusCode);
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);   // nothing was stored
        StillAnswers(ctrl);
    }

    [Theory]
    [InlineData(0x7F)]
    [InlineData(0x03)]   // LBA Range Type: not modelled
    public void AnUnknownFeatureIsInvalidFieldAndTheControllerGoesOn(int fid)
    {
        using var dev = New();
        using var ctrl = Open(dev);
        var get = Assert.Throws<NvmeCommandException>(() => ctrl.GetFeature((FeatureId)fid));
        Assert.Equal(StatusCodeType.Generic, get.StatusCodeType);
        Assert.Equal((byte)GenericStatusCode.InvalidField, get.StatusCode);
        Assert.Contains("Invalid Field in Command", get.Message);
        StillAnswers(ctrl);
        var set = Assert.Throws<NvmeCommandException>(() => ctrl.SetFeature((FeatureId)fid, 0));
        Assert.Equal((byte)GenericStatusCode.InvalidField, set.StatusCode);
        StillAnswers(ctrl);
    }

    [Fact]
    public void VolatileWriteCacheIsRefusedWhenTheControllerHasNone()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions { Oncs = Saving, VolatileWriteCache = false });
        using var ctrl = Open(dev);
        Assert.False(ctrl.Identity.VolatileWriteCache);
        int doorbells = dev.SubmissionDoorbells(0);
        var e = Assert.Throws<ArgumentException>(() => ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = true }));
        Assert.Equal("fid", e.ParamName);
        Assert.Contains("VWC", e.Message);
        Assert.Throws<ArgumentException>(() => ctrl.SetFeature(FeatureId.VolatileWriteCache, 0, save: true));
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        // The device has no such feature either: Invalid Field, for a Get or a Set that bypasses the driver.
        Assert.Equal((byte)GenericStatusCode.InvalidField, Assert.Throws<NvmeCommandException>(() => ctrl.GetFeature<VolatileWriteCacheFeature>()).StatusCode);
        Assert.Equal((byte)GenericStatusCode.InvalidField, Assert.Throws<NvmeCommandException>(() =>
            ctrl.ExecuteAdmin(NvmeCommand.SetFeatures(FeatureId.VolatileWriteCache, save: false, nsid: 0, cdw11: 1))).StatusCode);
        StillAnswers(ctrl);
    }

    [Fact]
    public void WriteAtomicityNormalIsNotChangeableInTheModel()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        Assert.False(ctrl.GetFeature<WriteAtomicityNormalFeature>().DisableNormal);
        var e = Assert.Throws<NvmeCommandException>(() => ctrl.SetFeature(new WriteAtomicityNormalFeature { DisableNormal = true }));
        Assert.Equal((byte)CommandSpecificStatusCode.FeatureNotChangeable, e.StatusCode);
        Assert.Contains("Feature Not Changeable", e.Message);
        StillAnswers(ctrl);
    }

    [Fact]
    public void TemperatureThresholdOutOfRangeIsRefused()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        Assert.Equal("kelvin", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetTemperatureThreshold(65536)).ParamName);
        Assert.Equal("kelvin", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetTemperatureThreshold(-1)).ParamName);
        Assert.Equal("sensor", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetTemperatureThreshold(300, sensor: 9)).ParamName);
        Assert.Equal("type", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetTemperatureThreshold(300, type: (TemperatureThresholdType)2)).ParamName);
        Assert.Equal("sensor", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetTemperatureThreshold(9)).ParamName);
        Assert.Equal("sensor", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetTemperatureThreshold(TemperatureThresholdFeature.AllSensors)).ParamName);
        Assert.Equal("Kelvin", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(new TemperatureThresholdFeature { Kelvin = 70000 })).ParamName);
        Assert.Equal("celsius", Assert.Throws<ArgumentOutOfRangeException>(() => TemperatureThresholdFeature.FromCelsius(-300)).ParamName);
        // The raw call checks the same fields: TMPSEL 9, THSEL 2, a reserved bit.
        Assert.Equal("cdw11", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(FeatureId.TemperatureThreshold, 9u << 16 | 300)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(FeatureId.TemperatureThreshold, 2u << 20 | 300));
        Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(FeatureId.TemperatureThreshold, 1u << 22 | 300));
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        Assert.Equal(NvmeDevice.DefaultOverTemperatureThreshold, ctrl.GetTemperatureThreshold().Kelvin);
        StillAnswers(ctrl);
    }

    public static TheoryData<FeatureId, uint, string> RawValuesTheDriverRefuses => new()
    {
        { FeatureId.Arbitration, 0x08, "reserved" },
        { FeatureId.PowerManagement, 0x01, "NPSS" },            // power state 1; the model has only state 0
        { FeatureId.PowerManagement, 3u << 5, "WH" },
        { FeatureId.PowerManagement, 0x100, "reserved" },
        { FeatureId.ErrorRecovery, 1u << 17, "reserved" },
        { FeatureId.VolatileWriteCache, 0x2, "reserved" },
        { FeatureId.InterruptCoalescing, 0x1_0000, "reserved" },
        { FeatureId.InterruptVectorConfiguration, 8, "MSI-X" },   // the model has 8 vectors: 0-7
        { FeatureId.InterruptVectorConfiguration, 1u << 17, "reserved" },
        { FeatureId.WriteAtomicityNormal, 0x2, "reserved" },
    };

    [Theory]
    [MemberData(nameof(RawValuesTheDriverRefuses))]
    public void ReservedBitsAndOutOfRangeFieldsAreRefusedBeforeTheDevice(FeatureId fid, uint cdw11, string why)
    {
        using var dev = New();
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(fid, cdw11));
        Assert.Equal("cdw11", e.ParamName);
        Assert.Contains(why, e.Message);
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        StillAnswers(ctrl);
    }

    [Fact]
    public void BadSelectsNamespacesAndVectorsAreRefused()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        Assert.Equal("select", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetFeature(FeatureId.Arbitration, (FeatureSelect)4)).ParamName);
        Assert.Equal("nsid", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetFeature(FeatureId.ErrorRecovery, nsid: 2)).ParamName);
        Assert.Equal("nsid", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(new ErrorRecoveryFeature(), nsid: 7)).ParamName);
        Assert.Equal("vector", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetInterruptVectorConfiguration(8)).ParamName);
        Assert.Equal("vector", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.GetInterruptVectorConfiguration(-1)).ParamName);
        Assert.Equal("LowPriorityWeight", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.SetFeature(new ArbitrationFeature { LowPriorityWeight = 0 })).ParamName);
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        StillAnswers(ctrl);
    }

    [Fact]
    public void NamespaceRulesAreTheDevicesToEnforce()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        // Error Recovery is per namespace: NSID 0 names none.
        var none = Assert.Throws<NvmeCommandException>(() => ctrl.GetFeature<ErrorRecoveryFeature>());
        Assert.Equal((byte)GenericStatusCode.InvalidNamespaceOrFormat, none.StatusCode);
        // Arbitration is controller wide: an NSID is refused with Feature Not Namespace Specific.
        var wide = Assert.Throws<NvmeCommandException>(() => ctrl.SetFeature(new ArbitrationFeature { LowPriorityWeight = 1, MediumPriorityWeight = 1, HighPriorityWeight = 1 }, nsid: 1));
        Assert.Equal((byte)CommandSpecificStatusCode.FeatureNotNamespaceSpecific, wide.StatusCode);
        // All namespaces is accepted for a namespace-specific Set.
        ctrl.SetFeature(new ErrorRecoveryFeature { TimeLimitUnits = 7 }, nsid: NvmeController.AllNamespaces);
        Assert.Equal(7, ctrl.GetFeature<ErrorRecoveryFeature>(nsid: 1).TimeLimitUnits);
        // DULBE needs NSFEAT bit 2, which the model's namespace does not report.
        var dulbe = Assert.Throws<NvmeCommandException>(() => ctrl.SetFeature(new ErrorRecoveryFeature { DeallocatedOrUnwrittenBlockError = true }, nsid: 1));
        Assert.Equal((byte)GenericStatusCode.InvalidField, dulbe.StatusCode);
        StillAnswers(ctrl);
    }

    [Fact]
    public void TheModelRefusesReservedValuesItself()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        foreach (var (fid, cdw11) in new (FeatureId, uint)[]
        {
            (FeatureId.VolatileWriteCache, 2), (FeatureId.TemperatureThreshold, 9u << 16), (FeatureId.TemperatureThreshold, 2u << 20),
            (FeatureId.PowerManagement, 1), (FeatureId.InterruptVectorConfiguration, 8), (FeatureId.Arbitration, 0x10),
        })
        {
            var e = Assert.Throws<NvmeCommandException>(() => ctrl.ExecuteAdmin(NvmeCommand.SetFeatures(fid, save: false, nsid: 0, cdw11)));
            Assert.Equal((byte)GenericStatusCode.InvalidField, e.StatusCode);
        }
        var get = Assert.Throws<NvmeCommandException>(() => ctrl.ExecuteAdmin(NvmeCommand.GetFeatures(FeatureId.TemperatureThreshold, cdw11: 9u << 16)));
        Assert.Equal((byte)GenericStatusCode.InvalidField, get.StatusCode);
        var sel = Assert.Throws<NvmeCommandException>(() => ctrl.ExecuteAdmin(NvmeCommand.GetFeatures(FeatureId.Arbitration) with { Cdw10 = 0x401 }));
        Assert.Equal((byte)GenericStatusCode.InvalidField, sel.StatusCode);
        StillAnswers(ctrl);
    }

    [Fact]
    public void DecodedFieldsReadAsNvmeCliPrintsThem()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        uint value = ctrl.GetFeature(FeatureId.VolatileWriteCache);
        Assert.Equal("Volatile Write Cache", NvmeFeatures.Name(FeatureId.VolatileWriteCache));
        Assert.Equal("Volatile Write Cache Enable (WCE): Enabled", Assert.Single(NvmeFeatures.Describe(FeatureId.VolatileWriteCache, value)).ToString());
        Assert.Contains(NvmeFeatures.Describe(FeatureId.TemperatureThreshold, ctrl.GetFeature(FeatureId.TemperatureThreshold)),
            f => f.ToString() == "Temperature Threshold (TMPTH): 343 K (69.85 °C)");
    }

    [Fact]
    public void GetAndSetOverAVfioUserSocket()
    {
        using var dev = New(transport: NvmeTransport.Socket);
        using var ctrl = Open(dev);
        Assert.True(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);
        ctrl.SetFeature(new VolatileWriteCacheFeature { Enabled = false }, save: true);
        ctrl.SetTemperatureThreshold(300, sensor: 2);
        Assert.False(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);
        Assert.Equal(300, ctrl.GetTemperatureThreshold(2).Kelvin);
        ctrl.Reset();
        Assert.False(ctrl.GetFeature<VolatileWriteCacheFeature>().Enabled);   // saved
        Assert.Equal(NvmeDevice.DefaultOverTemperatureThreshold, ctrl.GetTemperatureThreshold(2).Kelvin);   // not saved
        var e = Assert.Throws<NvmeCommandException>(() => ctrl.GetFeature((FeatureId)0x7F));
        Assert.Equal((byte)GenericStatusCode.InvalidField, e.StatusCode);
        StillAnswers(ctrl);
    }
}
