using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

// Get Features and Set Features (NVMe 1.4 §5.13, §5.21) on a feature store with a current, a default and a saved
// value per feature: Arbitration, Power Management, Temperature Threshold (per sensor 0-8, over and under), Error
// Recovery (namespace 1), Volatile Write Cache, Number of Queues (Get only: Set stays the special case in Admin()),
// Interrupt Coalescing, Interrupt Vector Configuration (per MSI-X vector) and Write Atomicity Normal (fixed).
public sealed partial class NvmeDevice
{
    /// <summary>Temperature sensors with thresholds: the composite temperature (0) and sensors 1-8 (§5.21.1.4).</summary>
    private const int TemperatureSensors = 9;

    /// <summary>Over temperature threshold default: 343 K (69.85 °C), as QEMU's nvme device reports.</summary>
    public const int DefaultOverTemperatureThreshold = 0x157;

    // One value of a feature: a Temperature Threshold sensor and type, or an interrupt vector, has a value of its own.
    private sealed class FeatureValue(uint defaultValue)
    {
        public uint Default { get; } = defaultValue;
        public uint Current { get; set; } = defaultValue;
        public uint? Saved { get; set; }
    }

    // Keys: the FID for one-value features; FID << 16 | index for the per-sensor and per-vector ones. Values are
    // created at their default when first touched, so an untouched feature costs nothing.
    private readonly Dictionary<int, FeatureValue> _features = [];

    private bool SaveAndSelect => (_options.Oncs & OptionalNvmCommands.SaveAndSelect) != 0;

    /// <summary>
    /// Controller reset (CC.EN 1 → 0) and power-on: every feature's current value becomes the saved one, or the default
    /// when none was saved (§5.21.1: saved values are loaded at reset); firmware committed for activation at the next
    /// reset becomes the running one (§5.11). Under the controller lock.
    /// </summary>
    private void ResetFeatureState()
    {
        foreach (var value in _features.Values) { value.Current = value.Saved ?? value.Default; }
        ActivatePendingFirmware();
    }

    /// <summary>Identify Controller fields of the features and firmware (Figure 247): VWC, then FR, FRMW and FWUG.</summary>
    private void IdentifyFeaturesAndFirmware(Span<byte> data)
    {
        data[525] = (byte)(_options.VolatileWriteCache ? 1 : 0);
        IdentifyFirmware(data);
    }

    /// <summary>What SEL = 011b reports for a feature the model keeps (§5.13.2), or null for an unknown FID.</summary>
    private FeatureCapabilities? Capabilities(FeatureId fid) => fid switch
    {
        // Without a volatile write cache, FID 06h does not exist (§5.21.1.6).
        FeatureId.VolatileWriteCache when !_options.VolatileWriteCache => null,
        FeatureId.Arbitration or FeatureId.PowerManagement or FeatureId.TemperatureThreshold or FeatureId.VolatileWriteCache
            or FeatureId.InterruptCoalescing or FeatureId.InterruptVectorConfiguration => FeatureCapabilities.Saveable | FeatureCapabilities.Changeable,
        FeatureId.ErrorRecovery => FeatureCapabilities.Saveable | FeatureCapabilities.NamespaceSpecific | FeatureCapabilities.Changeable,
        // Set once per enable (§5.21.1.7), never saved: what is granted follows from the driver's request.
        FeatureId.NumberOfQueues => FeatureCapabilities.Changeable,
        // The model runs every write whole, so the atomicity setting changes nothing: reported as fixed at 0.
        FeatureId.WriteAtomicityNormal => FeatureCapabilities.None,
        _ => null,
    };

    private static uint DefaultFeatureValue(FeatureId fid, int index) => fid switch
    {
        // AB 7 (no burst limit), all weights 1 (0's based 0): what a round robin controller reports.
        FeatureId.Arbitration => ArbitrationFeature.NoBurstLimit,
        FeatureId.TemperatureThreshold => (index & 1) == (int)TemperatureThresholdType.Over ? DefaultOverTemperatureThreshold : 0u,
        FeatureId.VolatileWriteCache => 1,                                      // VWC present and enabled
        // Vector 0 serves the admin completion queue, which is never coalesced (§5.21.1.8).
        FeatureId.InterruptVectorConfiguration => (uint)index | (index == 0 ? 1u << 16 : 0),
        _ => 0,
    };

    private FeatureValue Feature(FeatureId fid, int index = 0)
    {
        int key = (int)fid << 16 | index;
        if (!_features.TryGetValue(key, out var value))
        {
            value = new FeatureValue(DefaultFeatureValue(fid, index));
            _features.Add(key, value);
        }
        return value;
    }

    /// <summary>
    /// The index of the value CDW11 selects: sensor × 2 + THSEL for a temperature threshold (-1: every sensor, Set
    /// only), the vector for Interrupt Vector Configuration, 0 otherwise; null when CDW11 selects none that exists.
    /// </summary>
    private int? FeatureIndex(FeatureId fid, uint cdw11, bool forSet)
    {
        switch (fid)
        {
            case FeatureId.TemperatureThreshold:
            {
                uint sensor = (cdw11 >> 16) & 0xF, type = (cdw11 >> 20) & 3;
                if (type > (uint)TemperatureThresholdType.Under) { return null; }
                if (sensor == TemperatureThresholdFeature.AllSensors && forSet) { return -1; }
                return sensor < TemperatureSensors ? (int)(sensor << 1 | type) : null;
            }
            case FeatureId.InterruptVectorConfiguration:
            {
                uint vector = cdw11 & 0xFFFF;
                return vector < (uint)_interrupts.Length ? (int)vector : null;
            }
            default:
                return 0;
        }
    }

    private NvmeStatus GetFeatures(in NvmeCommand c, ref uint dw0)
    {
        var fid = (FeatureId)(c.Cdw10 & 0xFF);
        var select = (FeatureSelect)((c.Cdw10 >> 8) & 7);
        if (Capabilities(fid) is not { } capabilities) { return Generic(GenericStatusCode.InvalidField); }
        // SEL is defined only when ONCS bit 4 is set (§5.15.2.2, Figure 247); 100b-111b are reserved.
        if (select > FeatureSelect.Supported || (select != FeatureSelect.Current && !SaveAndSelect)) { return Generic(GenericStatusCode.InvalidField); }
        if ((capabilities & FeatureCapabilities.NamespaceSpecific) != 0 && c.Nsid != 1) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
        if (select == FeatureSelect.Supported)
        {
            dw0 = (uint)capabilities;
            return default;
        }
        if (fid == FeatureId.NumberOfQueues)
        {
            // What was granted this enable; before the Set, and as the default, what the model would grant.
            int most = _sqs.Length - 1;
            int queues = select == FeatureSelect.Current && _queuesConfigured ? _grantedQueues : most;
            dw0 = (uint)(queues - 1) | (uint)(queues - 1) << 16;
            return default;
        }
        if (FeatureIndex(fid, c.Cdw11, forSet: false) is not { } index) { return Generic(GenericStatusCode.InvalidField); }
        var value = Feature(fid, index);
        uint stored = select switch
        {
            FeatureSelect.Default => value.Default,
            // Nothing saved: the default is returned (§5.13, SEL 010b).
            FeatureSelect.Saved => value.Saved ?? value.Default,
            _ => value.Current,
        };
        // DW0 has CDW11's layout: the selectors of a per-sensor threshold come back with its value.
        dw0 = fid == FeatureId.TemperatureThreshold ? stored | (c.Cdw11 & 0x003F_0000) : stored;
        return default;
    }

    private NvmeStatus SetFeatures(in NvmeCommand c, ref uint dw0)
    {
        var fid = (FeatureId)(c.Cdw10 & 0xFF);
        bool save = (c.Cdw10 & (1u << 31)) != 0;
        if (Capabilities(fid) is not { } capabilities) { return Generic(GenericStatusCode.InvalidField); }
        // SV without ONCS bit 4, or for a feature that cannot be saved (§5.21, Figure 128 status 0Dh).
        if (save && (!SaveAndSelect || (capabilities & FeatureCapabilities.Saveable) == 0)) { return Specific(CommandSpecificStatusCode.FeatureIdentifierNotSaveable); }
        if ((capabilities & FeatureCapabilities.Changeable) == 0) { return Specific(CommandSpecificStatusCode.FeatureNotChangeable); }
        if ((capabilities & FeatureCapabilities.NamespaceSpecific) != 0)
        {
            if (c.Nsid is not (1 or 0xFFFF_FFFF)) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
        }
        else if (c.Nsid is not (0 or 0xFFFF_FFFF))
        {
            return Specific(CommandSpecificStatusCode.FeatureNotNamespaceSpecific);
        }
        uint v = c.Cdw11;
        bool valid = fid switch
        {
            FeatureId.Arbitration => (v & 0xF8) == 0,
            // One power state (NPSS = 0); workload hints 0-2, the rest reserved (§5.21.1.2).
            FeatureId.PowerManagement => (v & ~0xFFu) == 0 && (v & 0x1F) == 0 && (v >> 5) <= 2,
            FeatureId.TemperatureThreshold => (v & 0xFFC0_0000) == 0,
            // DULBE needs NSFEAT bit 2 (deallocated or unwritten block errors), which the namespace does not report.
            FeatureId.ErrorRecovery => (v & 0xFFFF_0000) == 0,
            FeatureId.VolatileWriteCache => (v & ~1u) == 0,
            FeatureId.InterruptCoalescing => (v & 0xFFFF_0000) == 0,
            FeatureId.InterruptVectorConfiguration => (v & 0xFFFE_0000) == 0,
            _ => false,
        };
        if (!valid || FeatureIndex(fid, v, forSet: true) is not { } index) { return Generic(GenericStatusCode.InvalidField); }
        if (fid == FeatureId.TemperatureThreshold)
        {
            uint kelvin = v & 0xFFFF, type = (v >> 20) & 3;
            for (int sensor = 0; sensor < TemperatureSensors; sensor++)
            {
                if (index == -1 || index >> 1 == sensor) { Store(Feature(fid, sensor << 1 | (int)type), kelvin, save); }
            }
        }
        else
        {
            Store(Feature(fid, index), v, save);
        }
        dw0 = 0;
        return default;
    }

    private static void Store(FeatureValue value, uint v, bool save)
    {
        value.Current = v;
        if (save) { value.Saved = v; }
    }
}
