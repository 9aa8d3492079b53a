namespace Vfio.Spec.Virtio;

/// <summary>
/// PCI identity of a virtio device (virtio 1.2 §4.1.2 "PCI Device Discovery"): vendor 0x1AF4, device 0x1040 plus
/// the virtio device ID for a modern (non-transitional) device.
/// </summary>
public static class VirtioPciIds
{
    /// <summary>The PCI vendor ID of every virtio device.</summary>
    public const ushort Vendor = 0x1AF4;
    /// <summary>Added to the virtio device ID to give a modern device's PCI device ID (§4.1.2.1).</summary>
    public const ushort ModernDeviceBase = 0x1040;
    /// <summary>Virtio device ID of a network card (§5 "Device Types", §5.1.1).</summary>
    public const ushort NetDeviceType = 1;
    /// <summary>PCI device ID of a modern virtio-net device: 0x1040 + 1.</summary>
    public const ushort ModernNet = ModernDeviceBase + NetDeviceType;
    /// <summary>PCI device ID of a transitional virtio-net device (§4.1.2.1, table "Transitional PCI Device ID").</summary>
    public const ushort TransitionalNet = 0x1000;
    /// <summary>The PCI Revision ID a non-transitional device should report, at least (§4.1.2.1).</summary>
    public const byte ModernRevision = 1;
}

/// <summary>The <c>cfg_type</c> of a virtio vendor capability (virtio 1.2 §4.1.4 "Virtio Structure PCI Capabilities").</summary>
public enum VirtioPciCapType : byte
{
    /// <summary>VIRTIO_PCI_CAP_COMMON_CFG.</summary>
    Common = 1,
    /// <summary>VIRTIO_PCI_CAP_NOTIFY_CFG.</summary>
    Notify = 2,
    /// <summary>VIRTIO_PCI_CAP_ISR_CFG.</summary>
    Isr = 3,
    /// <summary>VIRTIO_PCI_CAP_DEVICE_CFG.</summary>
    Device = 4,
    /// <summary>VIRTIO_PCI_CAP_PCI_CFG (an access window through config space).</summary>
    PciCfg = 5,
    /// <summary>VIRTIO_PCI_CAP_SHARED_MEMORY_CFG.</summary>
    SharedMemory = 8,
    /// <summary>VIRTIO_PCI_CAP_VENDOR_CFG.</summary>
    Vendor = 9,
}

/// <summary>
/// Byte offsets in <c>struct virtio_pci_cap</c> (virtio 1.2 §4.1.4), the vendor-specific capability (ID 0x09)
/// that says where a virtio structure lives, and in <c>struct virtio_pci_notify_cap</c>, which extends it (§4.1.4.4).
/// </summary>
public static class VirtioPciCap
{
    /// <summary>cap_vndr: the generic PCI capability ID (0x09, vendor specific).</summary>
    public const int Vendor = 0;
    /// <summary>cap_next: the next capability's offset in config space.</summary>
    public const int Next = 1;
    /// <summary>cap_len: the capability's length, this structure included.</summary>
    public const int CapLength = 2;
    /// <summary>cfg_type: which structure (<see cref="VirtioPciCapType"/>).</summary>
    public const int CfgType = 3;
    /// <summary>bar: the BAR (0-5) holding the structure.</summary>
    public const int Bar = 4;
    /// <summary>id: tells capabilities of one type apart (shared memory regions).</summary>
    public const int Id = 5;
    /// <summary>offset (le32): where the structure starts in the BAR.</summary>
    public const int Offset = 8;
    /// <summary>length (le32): the structure's length in bytes.</summary>
    public const int Length = 12;
    /// <summary>Size of struct virtio_pci_cap.</summary>
    public const int Size = 16;
    /// <summary>notify_off_multiplier (le32) of struct virtio_pci_notify_cap (§4.1.4.4).</summary>
    public const int NotifyOffMultiplier = 16;
    /// <summary>Size of struct virtio_pci_notify_cap.</summary>
    public const int NotifyCapSize = 20;
    /// <summary>The highest BAR number a capability may name; larger ones are reserved (§4.1.4.1).</summary>
    public const int MaxBar = 5;
}

/// <summary>
/// Byte offsets in <c>struct virtio_pci_common_cfg</c> (virtio 1.2 §4.1.4.3 "Common configuration structure
/// layout"). The queue fields from <see cref="QueueSize"/> on refer to the queue <see cref="QueueSelect"/> names.
/// </summary>
public static class VirtioPciCommonConfig
{
    /// <summary>device_feature_select (le32): which 32 bits device_feature shows.</summary>
    public const int DeviceFeatureSelect = 0x00;
    /// <summary>device_feature (le32, read-only): the selected 32 feature bits the device offers.</summary>
    public const int DeviceFeature = 0x04;
    /// <summary>driver_feature_select (le32): which 32 bits driver_feature sets.</summary>
    public const int DriverFeatureSelect = 0x08;
    /// <summary>driver_feature (le32): the selected 32 feature bits the driver accepts.</summary>
    public const int DriverFeature = 0x0C;
    /// <summary>config_msix_vector (le16): MSI-X vector for configuration changes.</summary>
    public const int ConfigMsixVector = 0x10;
    /// <summary>num_queues (le16, read-only): the most virtqueues the device supports.</summary>
    public const int NumQueues = 0x12;
    /// <summary>device_status (u8): <see cref="VirtioStatus"/>; writing 0 resets the device.</summary>
    public const int DeviceStatus = 0x14;
    /// <summary>config_generation (u8, read-only): changes when device configuration changes (§2.5).</summary>
    public const int ConfigGeneration = 0x15;
    /// <summary>queue_select (le16): the queue the following fields refer to.</summary>
    public const int QueueSelect = 0x16;
    /// <summary>queue_size (le16): the queue's size; the device resets it to its maximum, 0 when the queue is unavailable.</summary>
    public const int QueueSize = 0x18;
    /// <summary>queue_msix_vector (le16): MSI-X vector for the queue's used buffer notifications.</summary>
    public const int QueueMsixVector = 0x1A;
    /// <summary>queue_enable (le16): 1 once the driver has configured the queue.</summary>
    public const int QueueEnable = 0x1C;
    /// <summary>queue_notify_off (le16, read-only): the queue's doorbell, in units of notify_off_multiplier (§4.1.4.4).</summary>
    public const int QueueNotifyOff = 0x1E;
    /// <summary>queue_desc (le64): device address of the descriptor area (the descriptor table, §2.7.5).</summary>
    public const int QueueDesc = 0x20;
    /// <summary>queue_driver (le64): device address of the driver area (the available ring, §2.7.6).</summary>
    public const int QueueDriver = 0x28;
    /// <summary>queue_device (le64): device address of the device area (the used ring, §2.7.8).</summary>
    public const int QueueDevice = 0x30;
    /// <summary>queue_notify_data (le16, read-only): the value to write with VIRTIO_F_NOTIF_CONFIG_DATA.</summary>
    public const int QueueNotifyData = 0x38;
    /// <summary>queue_reset (le16): resets one queue with VIRTIO_F_RING_RESET.</summary>
    public const int QueueReset = 0x3A;
    /// <summary>Size of the structure in virtio 1.2.</summary>
    public const int Size = 0x3C;

    /// <summary>
    /// VIRTIO_MSI_NO_VECTOR: written to config_msix_vector or queue_msix_vector for no interrupt, and read back
    /// when the device could not map the vector written (§4.1.5.1.2 "MSI-X Vector Configuration").
    /// </summary>
    public const ushort NoVector = 0xFFFF;
}

/// <summary>
/// The notification structure (virtio 1.2 §4.1.4.4 "Notification structure layout"): one doorbell per queue at
/// <c>cap.offset + queue_notify_off × notify_off_multiplier</c>.
/// </summary>
public static class VirtioPciNotify
{
    /// <summary>
    /// Bytes the driver writes to a doorbell without VIRTIO_F_NOTIFICATION_DATA: the queue's index, 16 bits
    /// (§4.1.5.2 "Available Buffer Notifications").
    /// </summary>
    public const int NotificationSize = 2;

    /// <summary>
    /// The doorbell's offset within the BAR: <paramref name="capOffset"/> (the notify capability's offset field)
    /// plus <paramref name="queueNotifyOff"/> × <paramref name="notifyOffMultiplier"/>.
    /// </summary>
    public static ulong DoorbellOffset(uint capOffset, ushort queueNotifyOff, uint notifyOffMultiplier) =>
        capOffset + (ulong)queueNotifyOff * notifyOffMultiplier;
}

/// <summary>The ISR status byte (virtio 1.2 §4.1.4.5 "ISR status capability"): reading it clears it.</summary>
[Flags]
public enum VirtioPciIsr : byte
{
    /// <summary>No interrupt pending.</summary>
    None = 0,
    /// <summary>Bit 0: a queue interrupt (used buffer notification).</summary>
    Queue = 1,
    /// <summary>Bit 1: a device configuration change.</summary>
    DeviceConfiguration = 2,
}
