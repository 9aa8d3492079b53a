using Vfio.Devices;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

// Get Features and Set Features (NVMe 1.4 §5.13, §5.21): raw dwords for any FID, typed values (Vfio.Spec.Nvme's
// INvmeFeature records) for the ones the spec package models. Every argument is checked against the controller's
// Identify data before a command is built, so a refused call leaves the admin queue untouched.
public sealed partial class NvmeController
{
    /// <summary>The broadcast NSID: every namespace (NVMe 1.4 §6.1.5), accepted by Set Features of namespace-specific features.</summary>
    public const uint AllNamespaces = 0xFFFF_FFFF;

    /// <summary>
    /// Get Features: DW0 of the completion, the feature's value (or, with <see cref="FeatureSelect.Supported"/>, its
    /// <see cref="FeatureCapabilities"/>). <paramref name="cdw11"/> is passed through for features that take a selector
    /// there (Temperature Threshold, Interrupt Vector Configuration).
    /// </summary>
    /// <param name="fid">The feature.</param>
    /// <param name="select">Which value: current, default, saved or the capabilities.</param>
    /// <param name="nsid">0 for controller-wide features, or an NSID for namespace-specific ones.</param>
    /// <param name="cdw11">Command dword 11.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="select"/> is not 0-3, or <paramref name="nsid"/> names no namespace.</exception>
    /// <exception cref="ArgumentException">A select other than current on a controller whose ONCS bit 4 is clear.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command (e.g. Invalid Field for a FID it does not have).</exception>
    public uint GetFeature(FeatureId fid, FeatureSelect select = FeatureSelect.Current, uint nsid = 0, uint cdw11 = 0)
    {
        CheckSelect(select);
        CheckFeatureNamespace(nsid);
        return ExecuteAdmin(NvmeCommand.GetFeatures(fid, select, nsid, cdw11));
    }

    /// <summary>
    /// Set Features with a raw CDW11 (and CDW12): DW0 of the completion. The fields of the features Vfio.Spec.Nvme
    /// models are checked first (reserved bits clear, values within what the controller reports).
    /// </summary>
    /// <param name="fid">The feature.</param>
    /// <param name="cdw11">The value, as the feature lays it out.</param>
    /// <param name="save">SV: keep the value across resets (needs ONCS bit 4).</param>
    /// <param name="nsid">0 for controller-wide features, an NSID or <see cref="AllNamespaces"/> for namespace-specific ones.</param>
    /// <param name="cdw12">Command dword 12, for features that use it.</param>
    /// <exception cref="ArgumentException">
    /// The feature cannot be set through this call (Number of Queues; Volatile Write Cache on a controller without one),
    /// or <paramref name="save"/> on a controller that cannot save features.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">A field of <paramref name="cdw11"/> is reserved or out of range, or <paramref name="nsid"/> names no namespace.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command; the status is decoded in the message.</exception>
    public uint SetFeature(FeatureId fid, uint cdw11, bool save = false, uint nsid = 0, uint cdw12 = 0)
    {
        CheckSet(fid, cdw11, save);
        CheckFeatureNamespace(nsid);
        return ExecuteAdmin(NvmeCommand.SetFeatures(fid, save, nsid, cdw11, cdw12));
    }

    /// <summary>
    /// A typed feature value, e.g. <c>GetFeature&lt;VolatileWriteCacheFeature&gt;().Enabled</c>. For Temperature
    /// Threshold and Interrupt Vector Configuration this reads the composite over-temperature threshold and vector 0:
    /// use <see cref="GetTemperatureThreshold"/> and <see cref="GetInterruptVectorConfiguration"/> for the others.
    /// </summary>
    /// <typeparam name="T">The feature's value type (<see cref="ArbitrationFeature"/>, <see cref="PowerManagementFeature"/>, ...).</typeparam>
    /// <param name="select">Current, default or saved (<see cref="GetFeatureCapabilities"/> for the capabilities).</param>
    /// <param name="nsid">0, or the namespace for namespace-specific features (Error Recovery).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="select"/> is Supported or not 0-3, or <paramref name="nsid"/> names no namespace.</exception>
    /// <exception cref="ArgumentException">A select other than current on a controller whose ONCS bit 4 is clear.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public T GetFeature<T>(FeatureSelect select = FeatureSelect.Current, uint nsid = 0) where T : INvmeFeature<T>
    {
        CheckValueSelect(select);
        return T.Decode(GetFeature(T.Id, select, nsid));
    }

    /// <summary>Sets a typed feature value, e.g. <c>SetFeature(new VolatileWriteCacheFeature { Enabled = false })</c>.</summary>
    /// <typeparam name="T">The feature's value type.</typeparam>
    /// <param name="value">The value; its fields are checked as it is encoded.</param>
    /// <param name="save">SV: keep the value across resets (needs ONCS bit 4).</param>
    /// <param name="nsid">0, or a namespace (or <see cref="AllNamespaces"/>) for namespace-specific features.</param>
    /// <exception cref="ArgumentOutOfRangeException">A field of the value is out of range (the message names it).</exception>
    /// <exception cref="ArgumentException">As for <see cref="SetFeature(FeatureId, uint, bool, uint, uint)"/>.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public void SetFeature<T>(T value, bool save = false, uint nsid = 0) where T : INvmeFeature<T> =>
        SetFeature(T.Id, value.Encode(), save, nsid);

    /// <summary>What the controller says of a feature: saveable, namespace specific, changeable (Get Features SEL = 011b, §5.13.2).</summary>
    /// <exception cref="ArgumentException">The controller's ONCS bit 4 is clear, so it does not report capabilities.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command (e.g. a FID it does not have).</exception>
    public FeatureCapabilities GetFeatureCapabilities(FeatureId fid, uint nsid = 0) =>
        (FeatureCapabilities)(GetFeature(fid, FeatureSelect.Supported, nsid) & 7);

    /// <summary>One temperature threshold (§5.21.1.4): of the composite temperature (sensor 0) or of sensor 1-8.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The sensor is not 0-8, the type is not over or under, or the select is not current, default or saved.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public TemperatureThresholdFeature GetTemperatureThreshold(int sensor = 0, TemperatureThresholdType type = TemperatureThresholdType.Over,
        FeatureSelect select = FeatureSelect.Current)
    {
        if (sensor is < 0 or > 8) { throw new ArgumentOutOfRangeException(nameof(sensor), sensor, "a threshold is read for sensor 0 (composite) to 8"); }
        if (type is not (TemperatureThresholdType.Over or TemperatureThresholdType.Under))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "THSEL is Over or Under");
        }
        CheckValueSelect(select);
        var selector = new TemperatureThresholdFeature { Sensor = sensor, Type = type };
        uint dw0 = GetFeature(FeatureId.TemperatureThreshold, select, 0, selector.EncodeSelection());
        // TMPTH only: some controllers (QEMU's) return the threshold without the selectors it was asked with.
        return selector with { Kelvin = (int)(dw0 & 0xFFFF) };
    }

    /// <summary>Sets one temperature threshold, in Kelvin, of sensor 0 (composite) to 8, or 15 for every sensor.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The threshold is not 0-65535 K, the sensor not 0-8 or 15, or the type not over or under.</exception>
    /// <exception cref="ArgumentException"><paramref name="save"/> on a controller that cannot save features.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public void SetTemperatureThreshold(int kelvin, int sensor = 0, TemperatureThresholdType type = TemperatureThresholdType.Over, bool save = false)
    {
        if (kelvin is < 0 or > ushort.MaxValue) { throw new ArgumentOutOfRangeException(nameof(kelvin), kelvin, "TMPTH is 0-65535 K"); }
        if (sensor is not ((>= 0 and <= 8) or TemperatureThresholdFeature.AllSensors))
        {
            throw new ArgumentOutOfRangeException(nameof(sensor), sensor, "TMPSEL is 0 (composite), 1-8 or 15 (all sensors)");
        }
        if (type is not (TemperatureThresholdType.Over or TemperatureThresholdType.Under))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "THSEL is Over or Under");
        }
        SetFeature(new TemperatureThresholdFeature { Kelvin = kelvin, Sensor = sensor, Type = type }, save);
    }

    /// <summary>The configuration of one interrupt vector (§5.21.1.9).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The vector is outside the device's MSI-X table, or the select is not current, default or saved.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public InterruptVectorConfigurationFeature GetInterruptVectorConfiguration(int vector, FeatureSelect select = FeatureSelect.Current)
    {
        CheckVector(vector, nameof(vector));
        CheckValueSelect(select);
        uint dw0 = GetFeature(FeatureId.InterruptVectorConfiguration, select, 0, (uint)vector);
        return InterruptVectorConfigurationFeature.Decode(dw0) with { Vector = vector };
    }

    private bool SavesFeatures => (Identity.OptionalCommands & OptionalNvmCommands.SaveAndSelect) != 0;

    private void CheckSelect(FeatureSelect select)
    {
        if ((uint)select > (uint)FeatureSelect.Supported)
        {
            throw new ArgumentOutOfRangeException(nameof(select), select, "SEL is Current, Default, Saved or Supported (0-3)");
        }
        // ONCS bit 4 covers the whole Select field (NVMe 1.4 Figure 247), not only "saved".
        if (select != FeatureSelect.Current && !SavesFeatures)
        {
            throw new ArgumentException($"the controller at {_device.Address} does not support the Select field of Get Features " +
                $"(ONCS bit 4, Save and Select, is clear in Identify Controller): only the current value can be read ({select} asked)", nameof(select));
        }
    }

    private static void CheckValueSelect(FeatureSelect select)
    {
        if (select is not (FeatureSelect.Current or FeatureSelect.Default or FeatureSelect.Saved))
        {
            throw new ArgumentOutOfRangeException(nameof(select), select,
                "a value is read as Current, Default or Saved; use GetFeatureCapabilities for Supported");
        }
    }

    private void CheckFeatureNamespace(uint nsid)
    {
        if (nsid != 0 && nsid != AllNamespaces && nsid > Identity.NamespaceCount)
        {
            throw new ArgumentOutOfRangeException(nameof(nsid), nsid,
                $"the NSID is 0 (controller), 1-{Identity.NamespaceCount} (NN of {_device.Address}) or 0xFFFFFFFF (all namespaces)");
        }
    }

    private void CheckVector(int vector, string name)
    {
        int count = MsixTableSize();
        int most = count > 0 ? count - 1 : ushort.MaxValue;
        if (vector < 0 || vector > most)
        {
            throw new ArgumentOutOfRangeException(name, vector, $"the interrupt vector is 0-{most} (the MSI-X table of {_device.Address})");
        }
    }

    /// <summary>Entries in the device's MSI-X table, or 0 when unknown (no MSI-X index).</summary>
    private int MsixTableSize()
    {
        try
        {
            return Math.Max(0, _device.GetIrqInfo(IrqIndex.Msix).Count);
        }
        catch (ArgumentOutOfRangeException)
        {
            return 0;
        }
    }

    private void CheckSet(FeatureId fid, uint cdw11, bool save)
    {
        if (save && !SavesFeatures)
        {
            throw new ArgumentException($"the controller at {_device.Address} cannot save features: ONCS bit 4 (Save and Select) is clear " +
                "in Identify Controller, so Set Features with SV = 1 would fail; set the value without saving", nameof(save));
        }
        switch (fid)
        {
            case FeatureId.NumberOfQueues:
                throw new ArgumentException($"Number of Queues may be set once per controller enable (NVMe 1.4 §5.21.1.7), and the driver " +
                    $"set it while bringing up {_device.Address} ({_grantedQueues} I/O queue pairs granted); a second Set is refused by " +
                    "the controller and the driver's queue bookkeeping follows the first grant. Choose the count with " +
                    "NvmeControllerOptions.MaxIoQueues; read the grant with GetFeature<NumberOfQueuesFeature>()", nameof(fid));
            case FeatureId.Arbitration:
                Reserved(cdw11, 0xF8, "bits 7:3 of Arbitration are reserved");
                break;
            case FeatureId.PowerManagement:
            {
                Reserved(cdw11, 0xFFFF_FF00, "bits 31:8 of Power Management are reserved");
                // NPSS (Identify Controller byte 263) is the highest power state, 0's based.
                int npss = Identity.Raw.Length > 263 ? Identity.Raw.Span[263] : 0;
                var pm = PowerManagementFeature.Decode(cdw11);
                if (pm.PowerState > npss)
                {
                    throw new ArgumentOutOfRangeException(nameof(cdw11), pm.PowerState, $"PS is 0-{npss} (NPSS of {_device.Address})");
                }
                if (pm.WorkloadHint > 2) { throw new ArgumentOutOfRangeException(nameof(cdw11), pm.WorkloadHint, "WH is 0-2 (3-7 are reserved)"); }
                break;
            }
            case FeatureId.TemperatureThreshold:
            {
                Reserved(cdw11, 0xFFC0_0000, "bits 31:22 of Temperature Threshold are reserved");
                var t = TemperatureThresholdFeature.Decode(cdw11);
                if (t.Sensor is not ((>= 0 and <= 8) or TemperatureThresholdFeature.AllSensors))
                {
                    throw new ArgumentOutOfRangeException(nameof(cdw11), t.Sensor, "TMPSEL is 0 (composite), 1-8 or 15 (all sensors)");
                }
                if (t.Type is not (TemperatureThresholdType.Over or TemperatureThresholdType.Under))
                {
                    throw new ArgumentOutOfRangeException(nameof(cdw11), (int)t.Type, "THSEL is 0 (over) or 1 (under)");
                }
                break;
            }
            case FeatureId.ErrorRecovery:
                Reserved(cdw11, 0xFFFE_0000, "bits 31:17 of Error Recovery are reserved");
                break;
            case FeatureId.VolatileWriteCache:
                if (!Identity.VolatileWriteCache)
                {
                    throw new ArgumentException($"the controller at {_device.Address} has no volatile write cache (Identify Controller VWC " +
                        "bit 0 is clear), so there is no cache to enable or disable", nameof(fid));
                }
                Reserved(cdw11, ~1u, "bits 31:1 of Volatile Write Cache are reserved");
                break;
            case FeatureId.InterruptCoalescing:
                Reserved(cdw11, 0xFFFF_0000, "bits 31:16 of Interrupt Coalescing are reserved");
                break;
            case FeatureId.InterruptVectorConfiguration:
                Reserved(cdw11, 0xFFFE_0000, "bits 31:17 of Interrupt Vector Configuration are reserved");
                CheckVector((int)(cdw11 & 0xFFFF), nameof(cdw11));
                break;
            case FeatureId.WriteAtomicityNormal:
                Reserved(cdw11, ~1u, "bits 31:1 of Write Atomicity Normal are reserved");
                break;
        }
    }

    private static void Reserved(uint cdw11, uint mask, string what)
    {
        if ((cdw11 & mask) != 0) { throw new ArgumentOutOfRangeException(nameof(cdw11), $"0x{cdw11:x8}", what); }
    }
}
