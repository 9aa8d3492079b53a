using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Kernel;
using Vfio.Linux;
using static Interop.Vfio;
using static Vfio.Tests.Uapi.KernelReply;

namespace Vfio.Tests.Uapi;

/// <summary>
/// The grow-and-retry loop for variable-length INFO ioctls, against a fake kernel that answers the way
/// vfio_pci_core_get_region_info and vfio_iommu_type1_get_info do; and once against a real fd.
/// </summary>
public class VfioInfoBufferTests
{
    private static readonly PciAddress Dev = PciAddress.Parse("0000:00:04.0");

    /// <summary>
    /// A fake ioctl that answers with <paramref name="full"/>: when the caller's argsz is smaller, it writes only the
    /// fixed part (with caps flag set, cap_offset 0 and argsz raised to the full size), as the kernel does.
    /// </summary>
    private sealed class FakeKernel(byte[] full, int fixedSize, int capOffsetField)
    {
        public List<(uint Argsz, uint Index)> Calls { get; } = [];

        public unsafe int Invoke(byte* argument)
        {
            // SAFETY: VfioInfoBuffer hands over a pinned buffer of argsz bytes (at least the fixed part, >= 12);
            // nothing is read or written past argsz.
            uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(argument, 4));
            uint index = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(argument + 8, 4));
            Calls.Add((argsz, index));
            var arg = new Span<byte>(argument, (int)argsz);
            if (argsz >= full.Length)
            {
                full.CopyTo(arg);
                BinaryPrimitives.WriteUInt32LittleEndian(arg, argsz); // a large enough argsz is left as the caller set it
            }
            else
            {
                full.AsSpan(0, fixedSize).CopyTo(arg);
                BinaryPrimitives.WriteUInt32LittleEndian(arg[capOffsetField..], 0);
            }
            return 0;
        }
    }

    private static byte[] BarReply()
    {
        var reply = RegionInfo(index: 4, FlagRead | FlagWrite | FlagMmap | FlagCaps, size: 0x4000);
        int prev = 0;
        reply.AddSparseMmap(ref prev, (0, 0x2000), (0x3000, 0x1000));
        reply.AddMsixMappable(ref prev);
        return reply.SealArgsz().ToArray();
    }

    [Fact]
    public unsafe void GrowsToTheReportedArgszAndKeepsTheFixedPartInput()
    {
        byte[] full = BarReply();
        var kernel = new FakeKernel(full, RegionInfoSize, RegionCapOffsetField);

        byte[] reply = VfioInfoBuffer.Query(new vfio_region_info { index = 4 }, kernel.Invoke, "VFIO_DEVICE_GET_REGION_INFO(4)", Dev);

        Assert.Equal([(32u, 4u), ((uint)full.Length, 4u)], kernel.Calls);
        Assert.Equal(full, reply);
        var info = VfioCapabilityChain.ParseRegionInfo(reply);
        Assert.Equal([new Vfio.Devices.SparseArea(0, 0x2000), new Vfio.Devices.SparseArea(0x3000, 0x1000)], info.SparseAreas);
        Assert.True(info.MsixMappable);
    }

    [Fact]
    public unsafe void OneCallWhenThereAreNoCapabilities()
    {
        byte[] full = RegionInfo(index: 7, FlagRead | FlagWrite, size: 256).ToArray();
        var kernel = new FakeKernel(full, RegionInfoSize, RegionCapOffsetField);

        byte[] reply = VfioInfoBuffer.Query(new vfio_region_info { index = 7 }, kernel.Invoke, "q", Dev);

        Assert.Single(kernel.Calls);
        Assert.Equal(full, reply);
    }

    [Fact]
    public unsafe void Type1InfoGrowsToo()
    {
        var t1 = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        int prev = 0;
        t1.AddIovaRanges(ref prev, (0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff));
        t1.AddDmaAvail(ref prev, 65535);
        byte[] full = t1.SealArgsz().ToArray();
        var kernel = new FakeKernel(full, Type1InfoSize, Type1CapOffsetField);

        byte[] reply = VfioInfoBuffer.Query(default(vfio_iommu_type1_info), kernel.Invoke, "VFIO_IOMMU_GET_INFO", null);

        Assert.Equal(2, kernel.Calls.Count);
        Assert.Equal(24u, kernel.Calls[0].Argsz);
        Assert.Equal(2, VfioCapabilityChain.ParseIommuType1Info(reply).IovaRanges.Count);
    }

    [Fact]
    public unsafe void HotResetInfoGrowsOnEnospcFromTheCount()
    {
        // vfio_pci_ioctl_get_pci_hot_reset_info: too small -> -ENOSPC with count set; argsz untouched.
        var calls = new List<uint>();
        int Kernel(byte* argument)
        {
            // SAFETY: the buffer holds argsz bytes: 12 on the first call, 28 (checked below) before the devices are written.
            var arg = new Span<byte>(argument, 12);
            uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(arg);
            calls.Add(argsz);
            BinaryPrimitives.WriteUInt32LittleEndian(arg[8..], 2);
            if (argsz < 12 + 2 * 8)
            {
                Marshal.SetLastPInvokeError(Errno.ENOSPC);
                return -1;
            }
            var devices = new Span<byte>(argument + 12, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(devices, 7);        // group_id
            devices[6] = 0x03;                                           // bus
            devices[7] = (4 << 3) | 1;                                   // devfn 04.1
            BinaryPrimitives.WriteUInt32LittleEndian(devices[8..], 7);
            devices[14] = 0x03;
            devices[15] = 4 << 3;
            return 0;
        }

        byte[] reply = VfioInfoBuffer.Query(default(vfio_pci_hot_reset_info), Kernel, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Dev,
            static r => (ulong)(12 + 8 * BinaryPrimitives.ReadUInt32LittleEndian(r[8..])));

        Assert.Equal([12u, 28u], calls);
        Assert.Equal(28, reply.Length);
        Assert.Equal(0x21, reply[12 + 7]);
    }

    [Fact]
    public unsafe void EnospcWithoutASizeFunctionIsAnError()
    {
        static int Kernel(byte* argument)
        {
            Marshal.SetLastPInvokeError(Errno.ENOSPC);
            return -1;
        }

        var e = Assert.ThrowsAny<VfioException>(() => VfioInfoBuffer.Query(default(vfio_region_info), Kernel, "VFIO_DEVICE_GET_REGION_INFO(0)", Dev));
        Assert.Equal(Errno.ENOSPC, e.ErrorNumber);
    }

    [Fact]
    public unsafe void IoctlFailureBecomesAVfioExceptionNamingTheCall()
    {
        static int Kernel(byte* argument)
        {
            Marshal.SetLastPInvokeError(Errno.EINVAL);
            return -1;
        }

        var e = Assert.Throws<VfioException>(() => VfioInfoBuffer.Query(default(vfio_region_info), Kernel, "VFIO_DEVICE_GET_REGION_INFO(12)", Dev));
        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
        Assert.Equal("VFIO_DEVICE_GET_REGION_INFO(12)", e.Operation);
        Assert.Equal(Dev, e.Device);
    }

    [Fact]
    public unsafe void AbsurdArgszIsRefusedBeforeAllocating()
    {
        static int Kernel(byte* argument)
        {
            // SAFETY: every reply buffer starts with its 4-byte argsz.
            BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(argument, 4), uint.MaxValue);
            return 0;
        }

        var e = Assert.Throws<VfioException>(() => VfioInfoBuffer.Query(default(vfio_region_info), Kernel, "VFIO_DEVICE_GET_REGION_INFO(0)", Dev));
        Assert.Contains("4294967295-byte reply buffer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public unsafe void EverGrowingReplyGivesUp()
    {
        int calls = 0;
        int Kernel(byte* argument)
        {
            calls++;
            // SAFETY: every reply buffer starts with its 4-byte argsz.
            var arg = new Span<byte>(argument, 4);
            BinaryPrimitives.WriteUInt32LittleEndian(arg, BinaryPrimitives.ReadUInt32LittleEndian(arg) + 8);
            return 0;
        }

        var e = Assert.Throws<VfioException>(() => VfioInfoBuffer.Query(default(vfio_region_info), Kernel, "VFIO_DEVICE_GET_REGION_INFO(0)", Dev));
        Assert.Equal(VfioInfoBuffer.MaxAttempts, calls);
        Assert.Contains("still growing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RealFdThatIsNotVfioFailsWithEnotty()
    {
        // /dev/null does not implement the VFIO ioctls: this runs the SafeFdHandle path down to the real syscall.
        using var fd = new SafeFdHandle(Interop.Libc.open("/dev/null", Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC));
        Assert.False(fd.IsInvalid);

        var e = Assert.Throws<VfioException>(() => VfioInfoBuffer.QueryRegion(fd, 0, Dev));

        Assert.Equal(Errno.ENOTTY, e.ErrorNumber);
        Assert.Equal("VFIO_DEVICE_GET_REGION_INFO(0)", e.Operation);
    }
}
