using Vfio.Devices;
using Vfio.Dma;
using Vfio.Spec.Virtio;
using static Vfio.Spec.Virtio.VirtioPciCommonConfig;

namespace Vfio.VirtioNet.Virtio;

/// <summary>
/// The virtio PCI transport of a modern device (virtio 1.2 §4.1): the common configuration registers, the
/// doorbells and the device configuration, reached through the BARs the vendor capabilities name. It knows nothing
/// about the device type.
/// </summary>
public sealed class VirtioPciTransport : IDisposable
{
    // Register offsets: virtio 1.2 §4.1.4.3 struct virtio_pci_common_cfg (VirtioPciCommonConfig).

    private readonly Dictionary<int, IDeviceRegion> _bars = [];
    private readonly IDeviceRegion _common;
    private readonly IDeviceRegion _notify;
    private readonly IDeviceRegion? _deviceConfig;
    private readonly ulong _commonBase, _deviceBase;
    private readonly TimeProvider _time;

    /// <summary>Finds the device's virtio structures and maps the BARs that hold them.</summary>
    /// <exception cref="FormatException">The device is not a modern virtio device.</exception>
    /// <exception cref="DeviceProtocolViolationException">A capability places its structure outside its BAR.</exception>
    public VirtioPciTransport(IPciDevice device, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        _time = time ?? TimeProvider.System;
        Layout = VirtioPciLayout.Parse(VirtioPciLayout.ReadConfigImage(device.Config));
        try
        {
            _common = Bar(Layout.Common);
            _notify = Bar(Layout.Notify);
            _commonBase = Layout.Common.Offset;
            if (Layout.Device is { } dev)
            {
                _deviceConfig = Bar(dev);
                _deviceBase = dev.Offset;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The device.</summary>
    public IPciDevice Device { get; }

    /// <summary>Where the structures are.</summary>
    public VirtioPciLayout Layout { get; }

    private IDeviceRegion Bar(VirtioStructure s)
    {
        if (!_bars.TryGetValue(s.Bar, out var region))
        {
            region = Device.OpenRegion(PciRegion.Bar(s.Bar));
            _bars[s.Bar] = region;
        }
        // §4.1.4: offset and length locate the structure within the BAR the capability names; one that runs past
        // the BAR's end would send the driver's register accesses outside it.
        if ((ulong)s.Offset + s.Length > region.Size)
        {
            throw new DeviceProtocolViolationException(Device.Address, $"virtio PCI capability at config offset 0x{s.CapabilityOffset:x} ({s.Type}, §4.1.4)",
                $"structure [0x{s.Offset:x}, +0x{s.Length:x}) lies outside BAR{s.Bar} (size 0x{region.Size:x})");
        }
        return region;
    }

    /// <summary>device_status.</summary>
    public VirtioStatus Status
    {
        get => (VirtioStatus)_common.Read8(_commonBase + DeviceStatus);
        set => _common.Write8(_commonBase + DeviceStatus, (byte)value);
    }

    /// <summary>Sets status bits, keeping those already set (§3.1.1: each step adds a bit).</summary>
    public void AddStatus(VirtioStatus bits) => Status = Status | bits;

    /// <summary>
    /// Resets the device: writes 0 to device_status and waits until it reads back 0 (§4.1.4.3.2: "the driver MUST
    /// wait for a read of device_status to return 0 before reinitializing the device").
    /// </summary>
    /// <exception cref="DeviceTimeoutException">The device did not finish its reset in time.</exception>
    public void Reset(TimeSpan? timeout = null)
    {
        Status = VirtioStatus.Reset;
        long start = _time.GetTimestamp();
        var limit = timeout ?? TimeSpan.FromSeconds(5);
        while (Status != VirtioStatus.Reset)
        {
            if (_time.GetElapsedTime(start) > limit)
            {
                throw new DeviceTimeoutException(Device.Address, "virtio device_status 0 after a reset", limit);
            }
            Thread.Sleep(1);
        }
    }

    /// <summary>All 64 feature bits the device offers (device_feature, selected 32 bits at a time, §4.1.4.3).</summary>
    public ulong ReadDeviceFeatures()
    {
        _common.Write32(_commonBase + DeviceFeatureSelect, 0);
        ulong low = _common.Read32(_commonBase + DeviceFeature);
        _common.Write32(_commonBase + DeviceFeatureSelect, 1);
        ulong high = _common.Read32(_commonBase + DeviceFeature);
        return low | (high << 32);
    }

    /// <summary>Writes the features the driver accepts (driver_feature, two 32-bit halves).</summary>
    public void WriteDriverFeatures(ulong features)
    {
        _common.Write32(_commonBase + DriverFeatureSelect, 0);
        _common.Write32(_commonBase + DriverFeature, (uint)features);
        _common.Write32(_commonBase + DriverFeatureSelect, 1);
        _common.Write32(_commonBase + DriverFeature, (uint)(features >> 32));
    }

    /// <summary>num_queues: how many virtqueues the device has.</summary>
    public ushort QueueCount => _common.Read16(_commonBase + NumQueues);

    /// <summary>config_generation: changes whenever device configuration changes (§4.1.4.3).</summary>
    public byte ConfigGeneration => _common.Read8(_commonBase + VirtioPciCommonConfig.ConfigGeneration);

    /// <summary>Sets msix_config (the vector for configuration changes); <see cref="VirtioPciCommonConfig.NoVector"/> for none.</summary>
    public void SetConfigVector(ushort vector) => _common.Write16(_commonBase + ConfigMsixVector, vector);

    /// <summary>Selects a queue and returns its maximum size (queue_size as the device reset it; 0 = unavailable).</summary>
    /// <exception cref="DeviceProtocolViolationException">queue_size is above 32768, the most a split virtqueue has (§2.7).</exception>
    public ushort SelectQueue(ushort queue)
    {
        _common.Write16(_commonBase + QueueSelect, queue);
        ushort size = _common.Read16(_commonBase + QueueSize);
        if (size > SplitVirtq.MaxQueueSize)
        {
            throw new DeviceProtocolViolationException(Device.Address, $"virtio common configuration queue_size of virtqueue {queue} (§4.1.4.3)",
                $"queue_size {size}, but a split virtqueue has at most {SplitVirtq.MaxQueueSize} entries (§2.7)");
        }
        return size;
    }

    /// <summary>
    /// Hands queue <paramref name="index"/> to the device (§4.1.5.1.3 "Virtqueue Configuration"): size, the three
    /// ring addresses, no MSI-X vector unless given, then queue_enable. Returns the doorbell's offset in the notify BAR.
    /// </summary>
    public ulong EnableQueue(ushort index, SplitVirtqueue queue, ushort msixVector = NoVector)
    {
        ArgumentNullException.ThrowIfNull(queue);
        ushort max = SelectQueue(index);
        if (max == 0) { throw new InvalidOperationException($"{Device.Address}: virtqueue {index} is not available"); }
        if (queue.Size > max) { throw new ArgumentException($"queue {index} of {queue.Size} entries exceeds the device's maximum {max}", nameof(queue)); }
        _common.Write16(_commonBase + QueueSize, queue.Size);
        // 64-bit fields are written as two 32-bit accesses (§4.1.3.1: 32-bit wide accesses for 64-bit fields).
        WriteQueueAddress(QueueDesc, queue.DescriptorTableAddress);
        WriteQueueAddress(QueueDriver, queue.AvailRingAddress);
        WriteQueueAddress(QueueDevice, queue.UsedRingAddress);
        _common.Write16(_commonBase + QueueMsixVector, msixVector);
        ushort notifyOff = _common.Read16(_commonBase + QueueNotifyOff);
        _common.Write16(_commonBase + QueueEnable, 1);
        ulong doorbell = Layout.DoorbellOffset(notifyOff);
        // §4.1.4.4: the doorbell lies inside the notification structure, which lies inside its BAR.
        if (doorbell + VirtioPciNotify.NotificationSize > (ulong)Layout.Notify.Offset + Layout.Notify.Length || doorbell + VirtioPciNotify.NotificationSize > _notify.Size)
        {
            throw new DeviceProtocolViolationException(Device.Address, $"virtio common configuration queue_notify_off of virtqueue {index} (§4.1.4.4)",
                $"queue_notify_off {notifyOff} × notify_off_multiplier {Layout.NotifyOffMultiplier} puts the doorbell at 0x{doorbell:x}, outside the notification structure " +
                $"[0x{Layout.Notify.Offset:x}, +0x{Layout.Notify.Length:x}) of BAR{Layout.Notify.Bar} (size 0x{_notify.Size:x})");
        }
        return doorbell;
    }

    /// <summary>
    /// queue_msix_vector of queue <paramref name="index"/> as the device reports it: the vector written, or
    /// <see cref="VirtioPciCommonConfig.NoVector"/> when the device could not map it (§4.1.5.1.2).
    /// </summary>
    public ushort QueueVector(ushort index)
    {
        SelectQueue(index);
        return _common.Read16(_commonBase + QueueMsixVector);
    }

    /// <summary>Rings queue <paramref name="index"/>'s doorbell: a 16-bit write of the queue index (§4.1.5.2, no NOTIFICATION_DATA).</summary>
    public void Notify(ulong doorbellOffset, ushort index) => _notify.Write16(doorbellOffset, index);

    /// <summary>Reads a byte of device configuration.</summary>
    /// <exception cref="DeviceProtocolViolationException">The field lies past the device configuration structure's length.</exception>
    public byte ReadDeviceConfig8(uint offset) => DeviceConfig(offset, 1).Read8(_deviceBase + offset);

    /// <summary>Reads 16 bits of device configuration (little-endian, §2.5).</summary>
    /// <exception cref="DeviceProtocolViolationException">The field lies past the device configuration structure's length.</exception>
    public ushort ReadDeviceConfig16(uint offset) => DeviceConfig(offset, 2).Read16(_deviceBase + offset);

    /// <summary>Reads 32 bits of device configuration (little-endian, §2.5; a 32-bit field is read 32 bits wide, §4.1.3.1).</summary>
    /// <exception cref="DeviceProtocolViolationException">The field lies past the device configuration structure's length.</exception>
    public uint ReadDeviceConfig32(uint offset) => DeviceConfig(offset, 4).Read32(_deviceBase + offset);

    /// <summary>True when the device has a device configuration structure.</summary>
    public bool HasDeviceConfig => _deviceConfig is not null;

    private IDeviceRegion DeviceConfig(uint offset, uint width)
    {
        var region = _deviceConfig ?? throw new InvalidOperationException($"{Device.Address} has no virtio device configuration structure");
        // §4.1.4.6: the fields the negotiated features imply lie inside the structure the capability describes.
        if ((ulong)offset + width > Layout.Device!.Value.Length)
        {
            throw new DeviceProtocolViolationException(Device.Address, $"virtio device configuration capability at config offset 0x{Layout.Device.Value.CapabilityOffset:x} (§4.1.4.6)",
                $"the structure is {Layout.Device.Value.Length} bytes, but the driver reads {width} at offset {offset}");
        }
        return region;
    }

    /// <summary>
    /// Reads device configuration consistently: repeats <paramref name="read"/> until config_generation is the same
    /// before and after (§2.5.1, driver requirements: fields wider than 32 bits or read in parts may tear).
    /// </summary>
    public T ReadDeviceConfigConsistently<T>(Func<VirtioPciTransport, T> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        for (int attempt = 0; ; attempt++)
        {
            byte before = ConfigGeneration;
            T value = read(this);
            if (ConfigGeneration == before || attempt > 100) { return value; }
        }
    }

    /// <summary>Programs queue_desc, queue_driver or queue_device: the one place a ring address leaves its type.</summary>
    private void WriteQueueAddress(int field, DmaAddress address)
    {
        ulong value = address.Value;
        _common.Write32(_commonBase + (ulong)field, (uint)value);
        _common.Write32(_commonBase + (ulong)field + 4, (uint)(value >> 32));
    }

    /// <summary>Unmaps the BARs.</summary>
    public void Dispose()
    {
        foreach (var r in _bars.Values) { r.Dispose(); }
        _bars.Clear();
    }
}
