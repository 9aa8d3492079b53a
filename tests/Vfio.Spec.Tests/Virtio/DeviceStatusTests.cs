using Vfio.Spec.Virtio;

namespace Vfio.Spec.Tests.Virtio;

/// <summary>virtio 1.2 2.1 "Device Status Field".</summary>
public sealed class DeviceStatusTests
{
    [Theory]
    [InlineData(VirtioStatus.Acknowledge, 1)]
    [InlineData(VirtioStatus.Driver, 2)]
    [InlineData(VirtioStatus.Failed, 128)]
    [InlineData(VirtioStatus.FeaturesOk, 8)]
    [InlineData(VirtioStatus.DriverOk, 4)]
    [InlineData(VirtioStatus.DeviceNeedsReset, 64)]
    public void StatusBitsHaveTheSpecValues(VirtioStatus bit, int value) => Assert.Equal(value, (int)bit);

    [Fact]
    public void DeviceStatusIsOneByteAndZeroMeansReset()
    {
        // 2.1: "device status ... a single byte"; 4.1.4.3.1: writing 0 to device_status resets the device.
        Assert.Equal(sizeof(byte), System.Runtime.CompilerServices.Unsafe.SizeOf<VirtioStatus>());
        Assert.Equal(0, (int)VirtioStatus.Reset);
    }

    [Fact]
    public void NoTwoStatusBitsShareABit()
    {
        var bits = Enum.GetValues<VirtioStatus>().Where(s => s != VirtioStatus.Reset).Select(s => (int)s).ToArray();
        Assert.Equal(6, bits.Length);
        Assert.All(bits, b => Assert.True(System.Numerics.BitOperations.IsPow2(b)));
        Assert.Equal(bits.Length, bits.Distinct().Count());
    }
}
