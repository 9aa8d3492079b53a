using Vfio.Spec.Virtio;
using static Vfio.Spec.Virtio.VirtioPciCommonConfig;

namespace Vfio.Spec.Tests.Virtio;

/// <summary>virtio 1.2 4.1 "Virtio Over PCI Bus".</summary>
public sealed class PciTransportTests
{
    [Fact]
    public void ModernNetIdentity()
    {
        // 4.1.2.1 "Device Requirements: PCI Device Discovery": vendor 0x1AF4, device 0x1040 + virtio device ID,
        // Revision ID 1 or higher, and (table "Transitional PCI Device ID") a transitional network card is 0x1000;
        // 5.1.1 "Device ID": a network card is 1.
        Assert.Equal(0x1AF4, VirtioPciIds.Vendor);
        Assert.Equal(0x1040, VirtioPciIds.ModernDeviceBase);
        Assert.Equal(1, VirtioPciIds.NetDeviceType);
        Assert.Equal(0x1041, VirtioPciIds.ModernNet);
        Assert.Equal(0x1000, VirtioPciIds.TransitionalNet);
        Assert.Equal(1, VirtioPciIds.ModernRevision);
    }

    [Theory]
    [InlineData(VirtioPciCapType.Common, 1)]     // VIRTIO_PCI_CAP_COMMON_CFG
    [InlineData(VirtioPciCapType.Notify, 2)]     // VIRTIO_PCI_CAP_NOTIFY_CFG
    [InlineData(VirtioPciCapType.Isr, 3)]        // VIRTIO_PCI_CAP_ISR_CFG
    [InlineData(VirtioPciCapType.Device, 4)]     // VIRTIO_PCI_CAP_DEVICE_CFG
    [InlineData(VirtioPciCapType.PciCfg, 5)]     // VIRTIO_PCI_CAP_PCI_CFG
    [InlineData(VirtioPciCapType.SharedMemory, 8)] // VIRTIO_PCI_CAP_SHARED_MEMORY_CFG
    [InlineData(VirtioPciCapType.Vendor, 9)]     // VIRTIO_PCI_CAP_VENDOR_CFG
    public void CfgTypeValues(VirtioPciCapType type, int value)
    {
        // 4.1.4 "Virtio Structure PCI Capabilities": the cfg_type values.
        Assert.Equal(value, (int)type);
        Assert.Equal(1, System.Runtime.CompilerServices.Unsafe.SizeOf<VirtioPciCapType>());   // u8 cfg_type
    }

    [Fact]
    public void VirtioPciCapLayout()
    {
        // 4.1.4: struct virtio_pci_cap { u8 cap_vndr; u8 cap_next; u8 cap_len; u8 cfg_type; u8 bar; u8 id;
        // u8 padding[2]; le32 offset; le32 length; }, bar 0x0-0x5 valid.
        Assert.Equal(
            (0, 1, 2, 3, 4, 5, 8, 12, 16, 5),
            (VirtioPciCap.Vendor, VirtioPciCap.Next, VirtioPciCap.CapLength, VirtioPciCap.CfgType, VirtioPciCap.Bar, VirtioPciCap.Id,
             VirtioPciCap.Offset, VirtioPciCap.Length, VirtioPciCap.Size, VirtioPciCap.MaxBar));
    }

    [Fact]
    public void NotifyCapabilityAndDoorbellLayout()
    {
        // 4.1.4.4 "Notification structure layout": struct virtio_pci_notify_cap { struct virtio_pci_cap cap;
        // le32 notify_off_multiplier; }, doorbell at cap.offset + queue_notify_off * notify_off_multiplier.
        Assert.Equal(16, VirtioPciCap.NotifyOffMultiplier);
        Assert.Equal(20, VirtioPciCap.NotifyCapSize);
        Assert.Equal(0x3000UL + 3 * 4, VirtioPciNotify.DoorbellOffset(0x3000, 3, 4));
        Assert.Equal(0x3000UL, VirtioPciNotify.DoorbellOffset(0x3000, 7, 0));   // multiplier 0: one doorbell for all
        Assert.Equal(0xFFFF_FFFFUL + 0xFFFFUL * 0xFFFF_FFFFUL, VirtioPciNotify.DoorbellOffset(uint.MaxValue, ushort.MaxValue, uint.MaxValue));
        // 4.1.5.2 "Available Buffer Notifications": without NOTIFICATION_DATA, a 16-bit write of the queue index.
        Assert.Equal(2, VirtioPciNotify.NotificationSize);
    }

    [Fact]
    public void IsrStatusBits()
    {
        // 4.1.4.5 "ISR status capability": bit 0 queue interrupt, bit 1 device configuration interrupt; one byte.
        Assert.Equal(1, (int)VirtioPciIsr.Queue);
        Assert.Equal(2, (int)VirtioPciIsr.DeviceConfiguration);
        Assert.Equal(1, System.Runtime.CompilerServices.Unsafe.SizeOf<VirtioPciIsr>());
    }

    [Fact]
    public void CommonConfigurationFieldOffsets()
    {
        // 4.1.4.3 "Common configuration structure layout", struct virtio_pci_common_cfg: each field follows the
        // previous with its C size (le32 x4, le16 x2, u8 x2, le16 x5, le64 x3, le16 x2), no padding.
        (string Name, int Offset, int Size)[] fields =
        [
            ("device_feature_select", DeviceFeatureSelect, 4), ("device_feature", DeviceFeature, 4),
            ("driver_feature_select", DriverFeatureSelect, 4), ("driver_feature", DriverFeature, 4),
            ("config_msix_vector", ConfigMsixVector, 2), ("num_queues", NumQueues, 2),
            ("device_status", DeviceStatus, 1), ("config_generation", ConfigGeneration, 1),
            ("queue_select", QueueSelect, 2), ("queue_size", QueueSize, 2), ("queue_msix_vector", QueueMsixVector, 2),
            ("queue_enable", QueueEnable, 2), ("queue_notify_off", QueueNotifyOff, 2),
            ("queue_desc", QueueDesc, 8), ("queue_driver", QueueDriver, 8), ("queue_device", QueueDevice, 8),
            ("queue_notify_data", QueueNotifyData, 2), ("queue_reset", QueueReset, 2),
        ];
        int expected = 0;
        foreach (var (name, offset, size) in fields)
        {
            Assert.True(offset == expected, $"{name} at 0x{offset:x}, expected 0x{expected:x}");
            Assert.Equal(0, offset % size);   // naturally aligned
            expected += size;
        }
        Assert.Equal(VirtioPciCommonConfig.Size, expected);
        // Spot checks against the offsets as commonly quoted from the structure.
        Assert.Equal((0x14, 0x16, 0x20, 0x28, 0x30, 0x3C), (DeviceStatus, QueueSelect, QueueDesc, QueueDriver, QueueDevice, VirtioPciCommonConfig.Size));
    }

    [Fact]
    public void NoVectorIsAllOnes()
    {
        // 4.1.5.1.2 "MSI-X Vector Configuration": #define VIRTIO_MSI_NO_VECTOR 0xffff.
        Assert.Equal(0xFFFF, NoVector);
    }
}
