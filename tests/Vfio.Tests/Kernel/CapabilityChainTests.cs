using CsCheck;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Tests.Uapi;
using static Vfio.Tests.Uapi.KernelReply;

namespace Vfio.Tests.Kernel;

/// <summary>
/// VFIO INFO replies, built byte by byte as the kernel lays them out, parsed into RegionInfo and type1 IOMMU info;
/// malformed chains must fail with a VfioException that says what is wrong, never with an index error.
/// </summary>
public class CapabilityChainTests
{
    private const uint Rw = FlagRead | FlagWrite;

    // ---- region info ----

    [Fact]
    public void BarWithoutCapabilitiesIsWhollyMappable()
    {
        var bytes = RegionInfo(index: 0, Rw | FlagMmap, size: 0x4000).ToArray();

        var info = VfioCapabilityChain.ParseRegionInfo(bytes);

        Assert.Equal(0, info.Index);
        Assert.Equal(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, info.Flags);
        Assert.Equal(0x4000UL, info.Size);
        Assert.Equal(0UL, info.Offset);
        Assert.Null(info.SparseAreas);
        Assert.Null(info.Type);
        Assert.False(info.MsixMappable);
        Assert.Equal([new SparseArea(0, 0x4000)], info.MappableAreas);
    }

    [Fact]
    public void BarWithTwoSparseAreasAndMsixMappable()
    {
        // A 16 KiB BAR2 whose MSI-X table sits at 0x2000: mappable below and above it.
        var reply = RegionInfo(index: 2, Rw | FlagMmap | FlagCaps, size: 0x4000);
        int prev = 0;
        int sparseAt = reply.AddSparseMmap(ref prev, (0, 0x2000), (0x3000, 0x1000));
        int msixAt = reply.AddMsixMappable(ref prev);
        byte[] bytes = reply.SealArgsz().ToArray();
        Assert.Equal((32, 80, 88), (sparseAt, msixAt, bytes.Length)); // what the kernel's vfio_info_cap_add produces

        var info = VfioCapabilityChain.ParseRegionInfo(bytes);

        Assert.Equal(2, info.Index);
        Assert.Equal(2UL << 40, info.Offset);
        Assert.True((info.Flags & RegionFlags.Caps) != 0);
        Assert.Equal([new SparseArea(0, 0x2000), new SparseArea(0x3000, 0x1000)], info.SparseAreas);
        Assert.Equal(info.SparseAreas, info.MappableAreas);
        Assert.True(info.MsixMappable);
        Assert.Null(info.Type);
    }

    [Fact]
    public void DeviceSpecificRegionWithTypeCapability()
    {
        // Region 9 (past VFIO_PCI_NUM_REGIONS): Intel IGD OpRegion, type = PCI vendor type | 0x8086, subtype 1.
        var reply = RegionInfo(index: 9, FlagRead | FlagCaps, size: 0x2000);
        int prev = 0;
        reply.AddRegionType(ref prev, 0x8000_8086, 1);

        var info = VfioCapabilityChain.ParseRegionInfo(reply.SealArgsz().ToArray());

        Assert.Equal(9, info.Index);
        Assert.Equal(new RegionType(0x8000_8086, 1), info.Type);
        Assert.Null(info.SparseAreas);
        Assert.False(info.MsixMappable);
        Assert.Empty(info.MappableAreas); // no MMAP flag
    }

    [Fact]
    public void ChainInAnyOrderWithUnknownCapabilitySkipped()
    {
        var reply = RegionInfo(index: 0, Rw | FlagMmap | FlagCaps, size: 0x10000);
        int prev = 0;
        reply.AddRegionType(ref prev, 3, 1);
        reply.AddCap(0x77, 1, 24, RegionCapOffsetField, ref prev); // an id from a newer kernel
        reply.AddMsixMappable(ref prev);
        reply.AddSparseMmap(ref prev, (0x1000, 0x1000));

        var info = VfioCapabilityChain.ParseRegionInfo(reply.SealArgsz().ToArray());

        Assert.Equal(new RegionType(3, 1), info.Type);
        Assert.True(info.MsixMappable);
        Assert.Equal([new SparseArea(0x1000, 0x1000)], info.SparseAreas);
    }

    [Fact]
    public void ChainWalkReportsEveryCapabilityInOrder()
    {
        var reply = RegionInfo(index: 0, Rw | FlagCaps, size: 0x1000);
        int prev = 0;
        reply.AddSparseMmap(ref prev, (0, 0x1000));
        reply.AddCap(0x77, 5, 8, RegionCapOffsetField, ref prev);
        reply.AddMsixMappable(ref prev);
        byte[] bytes = reply.SealArgsz().ToArray();

        var caps = VfioCapabilityChain.ReadChain(bytes, RegionInfoSize, 32, "test");

        Assert.Equal([new VfioCapability(1, 1, 32), new VfioCapability(0x77, 5, 64), new VfioCapability(3, 1, 72)], caps);
    }

    [Fact]
    public void SparseCapabilityWithNoAreasLeavesNothingMappable()
    {
        var reply = RegionInfo(index: 0, Rw | FlagMmap | FlagCaps, size: 0x1000);
        int prev = 0;
        reply.AddSparseMmap(ref prev);

        var info = VfioCapabilityChain.ParseRegionInfo(reply.SealArgsz().ToArray());

        Assert.NotNull(info.SparseAreas);
        Assert.Empty(info.MappableAreas);
    }

    [Fact]
    public void CapOffsetIsIgnoredWithoutTheCapsFlag()
    {
        var bytes = RegionInfo(index: 7, Rw, size: 256).U32(RegionCapOffsetField, 0xdead).ToArray();

        var info = VfioCapabilityChain.ParseRegionInfo(bytes);

        Assert.Equal(7, info.Index);
        Assert.Null(info.SparseAreas);
    }

    [Fact]
    public void ArgszSmallerThanBufferCutsTheReply()
    {
        // The kernel leaves a larger-than-needed argsz alone; bytes past argsz are not part of the reply.
        var reply = RegionInfo(index: 0, Rw | FlagCaps, size: 0x1000);
        int prev = 0;
        reply.AddMsixMappable(ref prev);
        byte[] bytes = reply.SealArgsz().ToArray();
        Array.Resize(ref bytes, 128);
        bytes[100] = 0xff;

        Assert.True(VfioCapabilityChain.ParseRegionInfo(bytes).MsixMappable);
    }

    public static TheoryData<string, byte[], string> MalformedRegionReplies()
    {
        var data = new TheoryData<string, byte[], string>();

        var loopSelf = RegionInfo(0, Rw | FlagCaps, 0x1000);
        int p = 0;
        int at = loopSelf.AddMsixMappable(ref p);
        loopSelf.U32(at + 4, (uint)at);
        data.Add("capability pointing at itself", loopSelf.SealArgsz().ToArray(), "loops");

        var loopTwo = RegionInfo(0, Rw | FlagCaps, 0x1000);
        p = 0;
        int first = loopTwo.AddRegionType(ref p, 1, 1);
        int second = loopTwo.AddMsixMappable(ref p);
        loopTwo.U32(second + 4, (uint)first);
        data.Add("two capabilities pointing at each other", loopTwo.SealArgsz().ToArray(), "loops");

        var pastEnd = RegionInfo(0, Rw | FlagCaps, 0x1000);
        p = 0;
        at = pastEnd.AddMsixMappable(ref p);
        pastEnd.U32(at + 4, 4096);
        data.Add("next offset past the end", pastEnd.SealArgsz().ToArray(), "past the");

        var headerStraddlesEnd = RegionInfo(0, Rw | FlagCaps, 0x1000);
        p = 0;
        at = headerStraddlesEnd.AddMsixMappable(ref p);
        headerStraddlesEnd.U32(at + 4, (uint)at + 4);
        data.Add("next header straddling the end", headerStraddlesEnd.SealArgsz().ToArray(), "past the");

        data.Add("cap_offset past the end", RegionInfo(0, Rw | FlagCaps, 0x1000).U32(RegionCapOffsetField, 0xffff_fff8).ToArray(), "past the");

        data.Add("cap_offset inside the fixed part", RegionInfo(0, Rw | FlagCaps, 0x1000).U32(RegionCapOffsetField, 8).ToArray(), "inside the 32-byte fixed part");

        var truncatedSparse = RegionInfo(0, Rw | FlagMmap | FlagCaps, 0x4000);
        p = 0;
        at = truncatedSparse.AddSparseMmap(ref p, (0, 0x1000));
        truncatedSparse.U32(at + 8, 2); // claims two areas, holds one
        data.Add("sparse cap with fewer areas than nr_areas", truncatedSparse.SealArgsz().ToArray(), "truncated");

        var hugeSparse = RegionInfo(0, Rw | FlagMmap | FlagCaps, 0x4000);
        p = 0;
        at = hugeSparse.AddSparseMmap(ref p, (0, 0x1000));
        hugeSparse.U32(at + 8, uint.MaxValue);
        data.Add("sparse cap with nr_areas 0xffffffff", hugeSparse.SealArgsz().ToArray(), "truncated");

        var truncatedType = RegionInfo(9, FlagRead | FlagCaps, 0x1000);
        p = 0;
        truncatedType.AddMsixMappable(ref p);
        truncatedType.U16(32, 2); // the 8-byte cap now claims to be a 16-byte TYPE cap
        data.Add("type cap cut short by the end of the reply", truncatedType.SealArgsz().ToArray(), "truncated");

        data.Add("argsz smaller than vfio_region_info", RegionInfo(0, Rw, 0x1000).U32(0, 16).ToArray(), "argsz is 16, smaller than the 32-byte vfio_region_info");
        data.Add("argsz zero", RegionInfo(0, Rw, 0x1000).U32(0, 0).ToArray(), "argsz is 0");
        data.Add("buffer shorter than vfio_region_info", RegionInfo(0, Rw, 0x1000).ToArray()[..20], "shorter than the 32-byte vfio_region_info");
        data.Add("empty buffer", [], "reply is 0 bytes");
        data.Add("argsz larger than the buffer (caps left out)", RegionInfo(0, Rw | FlagCaps, 0x1000).U32(0, 88).ToArray(), "left the capabilities out");

        var outside = RegionInfo(0, Rw | FlagMmap | FlagCaps, 0x4000);
        p = 0;
        outside.AddSparseMmap(ref p, (0, 0x1000), (0x3000, 0x2000));
        data.Add("sparse area past the region's end", outside.SealArgsz().ToArray(), "area 1 [0x3000, +0x2000) lies outside the 0x4000-byte region");

        var wraps = RegionInfo(0, Rw | FlagMmap | FlagCaps, 0x4000);
        p = 0;
        wraps.AddSparseMmap(ref p, (ulong.MaxValue - 0xfff, 0x2000));
        data.Add("sparse area whose end wraps around", wraps.SealArgsz().ToArray(), "lies outside");

        var twice = RegionInfo(0, Rw | FlagCaps, 0x1000);
        p = 0;
        twice.AddMsixMappable(ref p);
        twice.AddMsixMappable(ref p);
        data.Add("the same capability twice", twice.SealArgsz().ToArray(), "appears twice");

        return data;
    }

    [Theory]
    [MemberData(nameof(MalformedRegionReplies))]
    public void MalformedRegionReplyFailsClearly(string caseName, byte[] reply, string expected)
    {
        var e = Assert.Throws<VfioException>(() => VfioCapabilityChain.ParseRegionInfo(reply));
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{caseName}: message was \"{e.Message}\"");
        Assert.StartsWith("malformed VFIO_DEVICE_GET_REGION_INFO reply: ", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, e.ErrorNumber);
    }

    // ---- type1 IOMMU info ----

    [Fact]
    public void Type1InfoWithIovaRangesDmaAvailAndMigration()
    {
        // x86 with an IOMMU: everything below the MSI window at 0xfee00000, and above it up to 48 bits.
        var reply = Type1Info(Type1FlagPgsizes | Type1FlagCaps, pageSizes: 0x4020_1000); // 4K | 2M | 1G
        int prev = 0;
        int iovaAt = reply.AddIovaRanges(ref prev, (0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff));
        reply.AddMigration(ref prev);
        int availAt = reply.AddDmaAvail(ref prev, 65535);
        byte[] bytes = reply.SealArgsz().ToArray();
        Assert.Equal((24, 104, 120), (iovaAt, availAt, bytes.Length));

        var info = VfioCapabilityChain.ParseIommuType1Info(bytes);

        Assert.Equal(0x4020_1000UL, info.PageSizes);
        Assert.Equal([new IovaRange(0, 0xfedf_ffff), new IovaRange(0xfef0_0000, 0xffff_ffff_ffff)], info.IovaRanges);
        Assert.Equal(65535u, info.DmaMappingsAvailable);
    }

    [Fact]
    public void Type1InfoWithoutCapabilities()
    {
        var info = VfioCapabilityChain.ParseIommuType1Info(Type1Info(Type1FlagPgsizes, 0x1000).ToArray());

        Assert.Equal(0x1000UL, info.PageSizes);
        Assert.Empty(info.IovaRanges);
        Assert.Null(info.DmaMappingsAvailable);
    }

    [Fact]
    public void Type1PageSizesAreZeroWithoutThePgsizesFlag()
    {
        Assert.Equal(0UL, VfioCapabilityChain.ParseIommuType1Info(Type1Info(0, 0x1000).ToArray()).PageSizes);
    }

    public static TheoryData<string, byte[], string> MalformedType1Replies()
    {
        var data = new TheoryData<string, byte[], string>();

        var backwards = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        int p = 0;
        backwards.AddIovaRanges(ref p, (0x2000, 0x1fff));
        data.Add("range ending before it starts", backwards.SealArgsz().ToArray(), "starts at 0x2000, after its inclusive end 0x1fff");

        var overlap = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        p = 0;
        overlap.AddIovaRanges(ref p, (0, 0x2fff), (0x2000, 0x4fff));
        data.Add("overlapping ranges", overlap.SealArgsz().ToArray(), "does not follow range 0");

        var unsorted = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        p = 0;
        unsorted.AddIovaRanges(ref p, (0x10000, 0x1ffff), (0, 0xfff));
        data.Add("descending ranges", unsorted.SealArgsz().ToArray(), "must ascend");

        var truncated = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        p = 0;
        int at = truncated.AddIovaRanges(ref p, (0, 0xffff));
        truncated.U32(at + 8, 3);
        data.Add("IOVA cap with fewer ranges than nr_iovas", truncated.SealArgsz().ToArray(), "truncated");

        var loop = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        p = 0;
        at = loop.AddIovaRanges(ref p, (0, 0xffff));
        loop.AddDmaAvail(ref p, 1);
        loop.U32(p + 4, (uint)at);
        data.Add("loop", loop.SealArgsz().ToArray(), "loops");

        data.Add("argsz 16 (the pre-cap_offset struct)", Type1Info(Type1FlagPgsizes, 0x1000).U32(0, 16).ToArray(), "argsz is 16, smaller than the 24-byte vfio_iommu_type1_info");
        data.Add("argsz larger than the buffer", Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000).U32(0, 120).ToArray(), "left the capabilities out");
        data.Add("cap_offset into the padding", Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000).U32(Type1CapOffsetField, 20).ToArray(), "inside the 24-byte fixed part");
        return data;
    }

    [Theory]
    [MemberData(nameof(MalformedType1Replies))]
    public void MalformedType1ReplyFailsClearly(string caseName, byte[] reply, string expected)
    {
        var e = Assert.Throws<VfioException>(() => VfioCapabilityChain.ParseIommuType1Info(reply));
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{caseName}: message was \"{e.Message}\"");
        Assert.StartsWith("malformed VFIO_IOMMU_GET_INFO reply: ", e.Message, StringComparison.Ordinal);
    }

    // ---- any corruption: a VfioException or a result, nothing else ----

    [Fact]
    public void CorruptedRepliesNeverFailWithAnythingButVfioException()
    {
        var region = RegionInfo(2, Rw | FlagMmap | FlagCaps, 0x4000);
        int p = 0;
        region.AddRegionType(ref p, 1, 1);
        region.AddSparseMmap(ref p, (0, 0x2000), (0x3000, 0x1000));
        region.AddMsixMappable(ref p);
        byte[] regionBytes = region.SealArgsz().ToArray();

        var type1 = Type1Info(Type1FlagPgsizes | Type1FlagCaps, 0x1000);
        p = 0;
        type1.AddIovaRanges(ref p, (0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff));
        type1.AddMigration(ref p);
        type1.AddDmaAvail(ref p, 100);
        byte[] type1Bytes = type1.SealArgsz().ToArray();

        // Overwrite a few bytes (biased to small values, which make plausible offsets and counts), maybe truncate.
        var corruption = Gen.Select(Gen.Int[0, 127], Gen.OneOf(Gen.Byte, Gen.Byte[0, 0x60])).Array[1, 6];
        Gen.Select(corruption, Gen.Int[0, 130], Gen.Bool).Sample((edits, cut, isRegion) =>
        {
            byte[] bytes = (byte[])(isRegion ? regionBytes : type1Bytes).Clone();
            foreach (var (at, value) in edits) { bytes[at % bytes.Length] = value; }
            bytes = bytes[..Math.Min(cut, bytes.Length)];
            try
            {
                if (isRegion) { VfioCapabilityChain.ParseRegionInfo(bytes); }
                else { VfioCapabilityChain.ParseIommuType1Info(bytes); }
            }
            catch (VfioException)
            {
                // a clear refusal is fine
            }
        }, iter: 20_000);
    }
}
