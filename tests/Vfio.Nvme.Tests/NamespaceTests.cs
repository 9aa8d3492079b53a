using System.Buffers.Binary;
using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// Namespaces end to end, driver against the model: management, attachment, Format NVM, the Identify lists, Compare and
/// Dataset Management with many ranges; and what bad input gets (refused before the device, the controller still answering).
/// </summary>
public sealed class NamespaceTests
{
    private const ulong MiB = 1 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static EmulatedNvme New(NvmeTransport transport = NvmeTransport.InProcess, int maxNamespaces = 8, ulong total = 16 * MiB,
        OptionalNvmCommands oncs = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement | OptionalNvmCommands.Compare) =>
        new(transport, new NvmeDeviceOptions
        {
            Serial = "NS-TEST",
            MaxNamespaces = maxNamespaces,
            TotalCapacityBytes = maxNamespaces > 1 ? total : 0,
            Oncs = oncs,
        });

    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    /// <summary>The controller answers Identify after a refused call: nothing was left half done.</summary>
    private static void StillAnswers(NvmeController c) =>
        Assert.Equal("NS-TEST", IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0)).SerialNumber);

    private static IdentifyController FreshIdentity(NvmeController c) => IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0));

    [Fact]
    public void IdentifyControllerReportsNamespaceManagement()
    {
        using var dev = New();
        using var c = Open(dev);
        Assert.Equal(8u, c.Identity.NamespaceCount);
        Assert.True(c.Identity.OptionalAdminCommands.HasFlag(OptionalAdminCommands.NamespaceManagement));
        Assert.True(c.Identity.OptionalAdminCommands.HasFlag(OptionalAdminCommands.FormatNvm));
        Assert.Equal((UInt128)(16 * MiB), c.Identity.TotalNvmCapacity);
        Assert.Equal((UInt128)(16 * MiB - 8192 * 512), c.Identity.UnallocatedNvmCapacity);
        Assert.Equal(NvmeDevice.ControllerIdentifier, c.Identity.ControllerId);
        Assert.Equal([NvmeDevice.ControllerIdentifier], c.GetSubsystemControllers());
        Assert.Equal([NvmeDevice.ControllerIdentifier], c.GetAttachedControllers(1));
    }

    [Fact]
    public void OneNamespaceModelOffersFormatButNotManagement()
    {
        using var dev = New(maxNamespaces: 1);
        using var c = Open(dev);
        Assert.Equal(1u, c.Identity.NamespaceCount);
        Assert.False(c.Identity.OptionalAdminCommands.HasFlag(OptionalAdminCommands.NamespaceManagement));
        var e = Assert.Throws<NvmeException>(() => c.CreateNamespace(new NamespaceCreateOptions(16)));
        Assert.Contains("does not support Namespace Management", e.Message);
        Assert.Throws<NvmeException>(() => c.AttachNamespace(1));
        Assert.Throws<NvmeException>(() => c.GetAllocatedNamespaceIds());
        // Bypassing the driver, the model refuses the opcode it does not offer.
        var raw = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(NvmeCommand.NamespaceManagement(NamespaceManagementSelect.Delete, 1)));
        Assert.Equal((byte)GenericStatusCode.InvalidCommandOpcode, raw.StatusCode);
        StillAnswers(c);
    }

    [Fact]
    public async Task CreateAttachUseDetachDelete()
    {
        using var dev = New();
        using var c = Open(dev);
        uint nsid = c.CreateNamespace(new NamespaceCreateOptions(SizeBlocks: 256, LbaFormatIndex: 1));   // 1 MiB of 4 KiB blocks
        Assert.Equal(2u, nsid);
        Assert.Equal([1u, 2u], c.GetAllocatedNamespaceIds());
        Assert.Equal([1u], c.GetActiveNamespaceIds());
        Assert.Empty(c.GetAttachedControllers(nsid));
        Assert.Throws<ArgumentException>(() => c.IdentifyNamespace(nsid));        // allocated, not active: a zeroed structure
        var allocated = c.IdentifyAllocatedNamespace(nsid);
        Assert.Equal(256UL, allocated.SizeInBlocks);
        Assert.Equal(4096, allocated.BlockSize);

        c.AttachNamespace(nsid);
        Assert.Equal([1u, 2u], c.Namespaces.Select(n => n.Id));
        Assert.Equal([NvmeDevice.ControllerIdentifier], c.GetAttachedControllers(nsid));
        var ns = c.GetNamespace(nsid);
        Assert.Equal(4096, ns.BlockSize);
        Assert.Equal(256UL, ns.BlockCount);

        using var q = c.CreateIoQueue();
        using var data = dev.Dma.Allocate(8192);
        using var back = dev.Dma.Allocate(8192);
        new Random(7).NextBytes(data.Span);
        await q.WriteAsync(ns, 10, 2, data, cancellationToken: Ct);
        await q.ReadAsync(ns, 10, 2, back, cancellationToken: Ct);
        Assert.Equal(data.Span.ToArray(), back.Span.ToArray());
        Assert.Equal(data.Span.ToArray(), dev.Model.NamespaceDisk(nsid).Slice(10 * 4096, 8192).ToArray());
        Assert.All(dev.Disk[..8192].ToArray(), b => Assert.Equal(0, b));   // namespace 1 untouched

        c.DetachNamespace(nsid);
        Assert.Equal([1u], c.Namespaces.Select(n => n.Id));
        // I/O to a detached namespace: the controller answers Invalid Namespace or Format.
        var e = await Assert.ThrowsAsync<NvmeCommandException>(() => q.ReadAsync(ns, 0, 1, back, cancellationToken: Ct).AsTask());
        Assert.Equal((byte)GenericStatusCode.InvalidNamespaceOrFormat, e.StatusCode);

        c.DeleteNamespace(nsid);
        Assert.Equal([1u], c.GetAllocatedNamespaceIds());
        Assert.True(dev.Model.NamespaceDisk(nsid).IsEmpty);
        StillAnswers(c);
    }

    [Fact]
    public void CapacityIsAccountedAndExhaustionDecoded()
    {
        using var dev = New(maxNamespaces: 4, total: 8 * MiB);
        using var c = Open(dev);
        var before = c.Identity.UnallocatedNvmCapacity;
        Assert.Equal((UInt128)(4 * MiB), before);
        uint a = c.CreateNamespace(new NamespaceCreateOptions(2048));        // 1 MiB of 512-byte blocks
        Assert.Equal(before - MiB, c.Identity.UnallocatedNvmCapacity);
        Assert.Equal(c.Identity.UnallocatedNvmCapacity, FreshIdentity(c).UnallocatedNvmCapacity);

        var e = Assert.Throws<NvmeCommandException>(() => c.CreateNamespace(new NamespaceCreateOptions(4 * MiB / 512)));
        Assert.Equal(StatusCodeType.CommandSpecific, e.StatusCodeType);
        Assert.Equal((byte)CommandSpecificStatusCode.NamespaceInsufficientCapacity, e.StatusCode);
        Assert.Contains("Namespace Insufficient Capacity", e.Message);
        StillAnswers(c);

        // What is left fills two more NSIDs; NN is 4, so a fifth namespace has no identifier.
        uint b = c.CreateNamespace(new NamespaceCreateOptions(1024));
        uint d = c.CreateNamespace(new NamespaceCreateOptions(1024));
        Assert.Equal([2u, 3u, 4u], new[] { a, b, d });
        var full = Assert.Throws<NvmeCommandException>(() => c.CreateNamespace(new NamespaceCreateOptions(1)));
        Assert.Equal((byte)CommandSpecificStatusCode.NamespaceIdentifierUnavailable, full.StatusCode);

        // The lowest free NSID is reused, with new identifiers (a namespace's NGUID is never given out twice).
        c.AttachNamespace(b);
        var oldNguid = c.IdentifyNamespace(b).NguidHex;
        c.DeleteNamespace(b);
        Assert.Equal(b, c.CreateNamespace(new NamespaceCreateOptions(1024)));
        c.AttachNamespace(b);
        Assert.NotEqual(oldNguid, c.IdentifyNamespace(b).NguidHex);
        StillAnswers(c);
    }

    [Fact]
    public void DeleteAllIsRefusedUnlessAskedFor()
    {
        using var dev = New();
        using var c = Open(dev);
        c.CreateNamespace(new NamespaceCreateOptions(64));
        var e = Assert.Throws<ArgumentException>(() => c.DeleteNamespace(NvmeCommand.AllNamespaces));
        Assert.Equal("nsid", e.ParamName);
        Assert.Equal([1u, 2u], c.GetAllocatedNamespaceIds());
        c.DeleteNamespace(NvmeCommand.AllNamespaces, allowAll: true);
        Assert.Empty(c.GetAllocatedNamespaceIds());
        Assert.Empty(c.Namespaces);
        Assert.Equal(c.Identity.TotalNvmCapacity, c.Identity.UnallocatedNvmCapacity);
        StillAnswers(c);
    }

    [Fact]
    public void FormatChangesTheBlockSizeAndUserDataEraseZeroes()
    {
        using var dev = New();
        using var c = Open(dev);
        var old = c.GetNamespace(1);
        Assert.Equal(512, old.BlockSize);
        dev.Disk.Fill(0x5A);
        c.Format(1, 1, SecureErase.UserData);
        var ns = c.GetNamespace(1);
        Assert.Equal(4096, ns.BlockSize);
        Assert.Equal(8192UL * 512 / 4096, ns.BlockCount);
        Assert.Equal(512, old.BlockSize);                      // the old record is unchanged: callers look it up again
        Assert.Equal(4096, dev.Model.NamespaceBlockSize(1));
        Assert.All(dev.Disk.ToArray(), b => Assert.Equal(0, b));

        // Without an erase the bytes stay, read in the new block size.
        dev.Disk.Fill(0x33);
        c.Format(1, 0);
        Assert.Equal(512, c.GetNamespace(1).BlockSize);
        Assert.Equal(0x33, dev.Disk[100]);
        c.Format(NvmeCommand.AllNamespaces, 1, SecureErase.Cryptographic);
        Assert.Equal(4096, c.GetNamespace(1).BlockSize);
        Assert.Equal(0, dev.Disk[100]);

        // I/O goes on in the new format.
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        buf.Span.Fill(0x77);
        q.Write(c.GetNamespace(1), 3, 1, buf);
        Assert.Equal(0x77, dev.Disk[3 * 4096]);
    }

    [Fact]
    public void FormatToAMissingFormatIsRefusedBeforeTheDevice()
    {
        using var dev = New();
        using var c = Open(dev);
        int blockSize = c.GetNamespace(1).BlockSize;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => c.Format(1, 2));
        Assert.Equal("lbaFormatIndex", e.ParamName);
        Assert.Contains("0..1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Format(1, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Format(1, 0, (SecureErase)5));
        Assert.Equal(blockSize, c.GetNamespace(1).BlockSize);
        StillAnswers(c);

        // The same command sent raw: the model answers Invalid Format; an SES it lacks is an Invalid Field.
        var raw = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(NvmeCommand.FormatNvm(1, 2)));
        Assert.Equal(StatusCodeType.CommandSpecific, raw.StatusCodeType);
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidFormat, raw.StatusCode);
        Assert.Contains("Invalid Format", raw.Message);
        var ses = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(NvmeCommand.FormatNvm(1, 0, (SecureErase)3)));
        Assert.Equal((byte)GenericStatusCode.InvalidField, ses.StatusCode);
        var pi = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(NvmeCommand.FormatNvm(1, 0, protectionInformation: 1)));
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidFormat, pi.StatusCode);
        StillAnswers(c);
    }

    [Fact]
    public void FormatIsRefusedWhileIoIsInFlight()
    {
        using var dev = New();
        using var c = Open(dev);
        using var buf = dev.Dma.Allocate(4096);    // freed after the queue, which holds it while the read is in flight
        using var q = c.CreateIoQueue();
        dev.Stalled = true;
        q.SubmitRead(c.GetNamespace(1), 0, 1, buf);
        q.RingDoorbell();
        Assert.Throws<InvalidOperationException>(() => c.Format(1, 1));
        dev.Stalled = false;
        Assert.Equal(512, dev.Model.NamespaceBlockSize(1));
        StillAnswers(c);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(9u)]
    [InlineData(0xFFFF_FFFEu)]
    public void NsidZeroAndPastNnAreRefused(uint nsid)
    {
        using var dev = New();
        using var c = Open(dev);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => c.IdentifyNamespace(nsid));
        Assert.Equal("nsid", e.ParamName);
        Assert.Contains("1..8 (Identify Controller NN)", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.GetNamespaceIdentifiers(nsid));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AttachNamespace(nsid));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.DetachNamespace(nsid));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.DeleteNamespace(nsid));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Format(nsid, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.GetAttachedControllers(nsid));
        StillAnswers(c);
    }

    [Fact]
    public void BadArgumentsAreRefusedBeforeTheDevice()
    {
        using var dev = New();
        using var c = Open(dev);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.CreateNamespace(new NamespaceCreateOptions(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.CreateNamespace(new NamespaceCreateOptions(10, CapacityBlocks: 11)));
        var f = Assert.Throws<ArgumentOutOfRangeException>(() => c.CreateNamespace(new NamespaceCreateOptions(10, LbaFormatIndex: 2)));
        Assert.Equal("NamespaceCreateOptions.LbaFormatIndex", f.ParamName);
        Assert.Throws<ArgumentNullException>(() => c.CreateNamespace(null!));
        Assert.Throws<ArgumentException>(() => c.AttachNamespace(1, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AttachNamespace(1, [.. Enumerable.Range(0, 2048).Select(i => (ushort)i)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.GetActiveNamespaceIds(0xFFFF_FFFE));
        Assert.Equal([1u], c.GetAllocatedNamespaceIds());
        StillAnswers(c);
    }

    [Fact]
    public void AttachmentErrorsFromTheModelAreDecoded()
    {
        using var dev = New();
        using var c = Open(dev);
        var again = Assert.Throws<NvmeCommandException>(() => c.AttachNamespace(1));
        Assert.Equal((byte)CommandSpecificStatusCode.NamespaceAlreadyAttached, again.StatusCode);
        Assert.Contains("Namespace Already Attached", again.Message);
        uint nsid = c.CreateNamespace(new NamespaceCreateOptions(8));
        var notAttached = Assert.Throws<NvmeCommandException>(() => c.DetachNamespace(nsid));
        Assert.Equal((byte)CommandSpecificStatusCode.NamespaceNotAttached, notAttached.StatusCode);
        var badList = Assert.Throws<NvmeCommandException>(() => c.AttachNamespace(nsid, 7));
        Assert.Equal((byte)CommandSpecificStatusCode.ControllerListInvalid, badList.StatusCode);
        var unallocated = Assert.Throws<NvmeCommandException>(() => c.AttachNamespace(5));
        Assert.Equal((byte)GenericStatusCode.InvalidField, unallocated.StatusCode);
        var thin = Assert.Throws<NvmeCommandException>(() => c.CreateNamespace(new NamespaceCreateOptions(8, CapacityBlocks: 4)));
        Assert.Equal((byte)CommandSpecificStatusCode.ThinProvisioningNotSupported, thin.StatusCode);
        StillAnswers(c);
    }

    [Fact]
    public void DescriptorsMatchIdentifyNamespace()
    {
        using var dev = New();
        using var c = Open(dev);
        var ids = c.GetNamespaceIdentifiers(1);
        var id = c.IdentifyNamespace(1);
        Assert.Equal(id.Eui64Hex, Assert.Single(ids, d => d.Type == NamespaceIdentifierType.Eui64).Hex);
        Assert.Equal(id.NguidHex, Assert.Single(ids, d => d.Type == NamespaceIdentifierType.Nguid).Hex);
        Assert.Equal(16, Assert.Single(ids, d => d.Type == NamespaceIdentifierType.Uuid).Value.Length);
        Assert.Equal(0, Assert.Single(ids, d => d.Type == NamespaceIdentifierType.CommandSetIdentifier).Value.Span[0]);
        Assert.Equal(16, id.Eui64Hex.Length);
        Assert.Equal(32, id.NguidHex.Length);
        Assert.NotEqual(new string('0', 32), id.NguidHex);
        Assert.Equal((UInt128)(8192 * 512), id.NvmCapacity);
        Assert.Equal(1, id.LbaFormatCountMinusOne);
        Assert.Equal(1, id.DeallocateFeatures);

        // Deterministic: the same serial gives the same identifiers; another namespace other ones.
        using var twin = New();
        using var c2 = Open(twin);
        Assert.Equal(id.NguidHex, c2.IdentifyNamespace(1).NguidHex);
        uint two = c.CreateNamespace(new NamespaceCreateOptions(8));
        c.AttachNamespace(two);
        Assert.NotEqual(id.Eui64Hex, c.IdentifyNamespace(two).Eui64Hex);

        // The descriptor list of an inactive namespace: the model answers Invalid Namespace or Format.
        c.DetachNamespace(two);
        var e = Assert.Throws<NvmeCommandException>(() => c.GetNamespaceIdentifiers(two));
        Assert.Equal((byte)GenericStatusCode.InvalidNamespaceOrFormat, e.StatusCode);
        StillAnswers(c);
    }

    [Fact]
    public void NvmeCliFieldsCarryEveryIdNsName()
    {
        using var dev = New();
        using var c = Open(dev);
        var fields = c.IdentifyNamespace(1).NvmeCliFields();
        string[] names =
        [
            "nsze", "ncap", "nuse", "nsfeat", "nlbaf", "flbas", "mc", "dpc", "dps", "nmic", "rescap", "fpi", "dlfeat", "nawun", "nawupf",
            "nacwu", "nabsn", "nabo", "nabspf", "noiob", "nvmcap", "npwg", "npwa", "npdg", "npda", "nows", "mssrl", "mcl", "msrc", "nulbaf",
            "anagrpid", "nsattr", "nvmsetid", "endgid", "nguid", "eui64", "lbafs",
        ];
        Assert.Equal(names, fields.Select(f => f.JsonName));
        Assert.Equal(8192UL, fields.Single(f => f.JsonName == "nsze").Value);
        var lbafs = Assert.IsAssignableFrom<IReadOnlyList<IReadOnlyList<(string JsonName, object Value)>>>(fields.Single(f => f.JsonName == "lbafs").Value);
        Assert.Equal(2, lbafs.Count);
        Assert.Equal(("ds", (object)12), lbafs[1][1]);
    }

    [Fact]
    public void ActiveListPagesAndCommonCapabilities()
    {
        using var dev = New(maxNamespaces: 6, total: 8 * MiB);
        using var c = Open(dev);
        for (int i = 0; i < 5; i++) { c.AttachNamespace(c.CreateNamespace(new NamespaceCreateOptions(16))); }
        Assert.Equal([1u, 2u, 3u, 4u, 5u, 6u], c.GetActiveNamespaceIds());
        Assert.Equal([4u, 5u, 6u], c.GetActiveNamespaceIds(startAfter: 3));
        Assert.Empty(c.GetActiveNamespaceIds(startAfter: 6));
        Assert.Equal(6, c.RefreshNamespaces().Count);
        var common = c.IdentifyNamespace(NvmeCommand.AllNamespaces);
        Assert.Equal([512, 4096], common.LbaFormats.Select(f => f.BlockSize));
        Assert.Equal(0UL, common.SizeInBlocks);
    }

    [Fact]
    public void ActiveListsOfMoreThan1024AreReadPageByPage()
    {
        const int count = 1100;
        using var dev = New(maxNamespaces: count, total: 8192 * 512 + (count - 1) * 512UL);
        using var c = Open(dev);
        var list = new byte[ControllerList.Size];
        ControllerList.Write(list, [c.Identity.ControllerId]);
        for (int i = 1; i < count; i++)
        {
            uint nsid = c.CreateNamespace(new NamespaceCreateOptions(1));
            // Attached bypassing the driver, which would read every active namespace again after each attach.
            c.ExecuteAdmin(NvmeCommand.NamespaceAttachment(NamespaceAttachmentSelect.Attach, nsid), list, NvmeDataDirection.ToDevice);
        }
        Assert.Equal(0u, (uint)c.Identity.UnallocatedNvmCapacity);
        var active = c.GetActiveNamespaceIds();
        Assert.Equal(Enumerable.Range(1, count).Select(i => (uint)i), active);
        Assert.Equal(Enumerable.Range(1001, count - 1000).Select(i => (uint)i), c.GetActiveNamespaceIds(startAfter: 1000));
        Assert.Equal(count, c.GetAllocatedNamespaceIds().Count);
        Assert.Equal(count, c.RefreshNamespaces().Count);
        Assert.Equal((uint)count, c.Namespaces[^1].Id);
    }

    [Fact]
    public void CompareEqualAndDifferent()
    {
        using var dev = New();
        using var c = Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        new Random(3).NextBytes(dev.Disk[..4096]);
        dev.Disk[..4096].CopyTo(buf.Span);
        Assert.True(q.Compare(ns, 0, 8, buf));
        buf.Span[4095] ^= 1;
        Assert.False(q.Compare(ns, 0, 8, buf));
        Assert.True(q.Compare(ns, 0, 7, buf));     // the changed byte is in block 7
        // Past the end is an error, not a difference.
        var e = Assert.Throws<NvmeCommandException>(() => q.Compare(ns, 8192, 1, buf));
        Assert.Equal((byte)GenericStatusCode.LbaOutOfRange, e.StatusCode);
        StillAnswers(c);
    }

    [Fact]
    public async Task CompareAsyncOnQueueAndBlockDevice()
    {
        using var dev = New();
        using var c = Open(dev);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        var expected = new byte[64 * 1024];
        new Random(5).NextBytes(expected);
        await bd.WriteAsync(100, expected, cancellationToken: Ct);
        Assert.True(await bd.CompareAsync(100, expected, cancellationToken: Ct));
        expected[^1] ^= 0x80;
        Assert.False(await bd.CompareAsync(100, expected, cancellationToken: Ct));
        using var buf = bd.AllocateBuffer(512);
        expected.AsSpan(0, 512).CopyTo(buf.Span);
        Assert.True(await bd.CompareAsync(100, 1, buf, cancellationToken: Ct));
        buf.Span[0] ^= 1;
        Assert.False(await bd.CompareAsync(100, 1, buf, cancellationToken: Ct));
    }

    [Fact]
    public void CompareIsRefusedWithoutOncs()
    {
        using var dev = New(oncs: OptionalNvmCommands.DatasetManagement);
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(512);
        Assert.Throws<NotSupportedException>(() => q.Compare(c.GetNamespace(1), 0, 1, buf));
    }

    [Fact]
    public async Task DatasetManagementWith256RangesDeallocatesThemAll()
    {
        using var dev = New();
        using var c = Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        dev.Disk.Fill(0xEE);
        // Every other pair of blocks: 256 ranges of 2 blocks, from block 0 to 1022.
        var ranges = Enumerable.Range(0, 256).Select(i => ((ulong)(4 * i), 2)).ToArray();
        await q.DeallocateAsync(ns, ranges, cancellationToken: Ct);
        for (int i = 0; i < 256; i++)
        {
            Assert.All(dev.Disk.Slice(4 * i * 512, 2 * 512).ToArray(), b => Assert.Equal(0, b));
            Assert.Equal(0xEE, dev.Disk[(4 * i + 2) * 512]);
        }
        Assert.Equal(0xEE, dev.Disk[1024 * 512]);

        var tooMany = Enumerable.Range(0, 257).Select(i => ((ulong)i, 1)).ToArray();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => q.DeallocateRanges(ns, tooMany));
        Assert.Equal("ranges", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DeallocateRanges(ns, []));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DeallocateRanges(ns, [(0UL, 0)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DatasetManagementAsync(ns,
            [new DsmRange { StartingLba = ulong.MaxValue, BlockCount = 2 }], DsmAttributes.Deallocate, Ct));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DatasetManagementAsync(ns, [new DsmRange { BlockCount = 1 }], (DsmAttributes)8, cancellationToken: Ct));
        // A range past the namespace: the controller answers LBA Out of Range and trims nothing.
        dev.Disk.Fill(0xEE);
        var past = Assert.Throws<NvmeCommandException>(() => q.DeallocateRanges(ns, [(0UL, 1), (8191UL, 2)]));
        Assert.Equal((byte)GenericStatusCode.LbaOutOfRange, past.StatusCode);
        Assert.Equal(0xEE, dev.Disk[0]);
        StillAnswers(c);
    }

    [Fact]
    public async Task DatasetManagementHintsAndBlockDeviceRanges()
    {
        using var dev = New();
        using var c = Open(dev);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        dev.Disk.Fill(0x11);
        // Hints only (no AD): nothing is deallocated.
        await bd.DatasetManagementAsync([new DsmRange { StartingLba = 0, BlockCount = 8, ContextAttributes = DsmContext.Create(accessFrequency: 2, sequentialRead: true) }],
            DsmAttributes.IntegralRead, Ct);
        Assert.Equal(0x11, dev.Disk[0]);
        await bd.DeallocateAsync([(0UL, 1), (10UL, 1)], cancellationToken: Ct);
        Assert.Equal(0, dev.Disk[0]);
        Assert.Equal(0, dev.Disk[10 * 512]);
        Assert.Equal(0x11, dev.Disk[512]);
    }

    [Theory]
    [InlineData(NvmeTransport.InProcess)]
    [InlineData(NvmeTransport.Socket)]
    [InlineData(NvmeTransport.SocketMessages)]
    public void HostileIdentifyDataIsRejectedAndTheControllerGoesOn(NvmeTransport transport)
    {
        using var dev = New(transport);
        using var c = Open(dev);
        void Tamper(IdentifyCns which, Action<byte[]> change) => dev.Model.TamperNamespaceIdentify = (cns, data) => { if (cns == which) { change(data); } };

        Tamper(IdentifyCns.NamespaceDescriptors, d => d[1] = 16);                    // the EUI64 descriptor claims 16 bytes
        Assert.Throws<FormatException>(() => c.GetNamespaceIdentifiers(1));
        StillAnswers(c);

        Tamper(IdentifyCns.ActiveNamespaces, d => { BinaryPrimitives.WriteUInt32LittleEndian(d, 3); BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(4), 2); });
        Assert.Throws<FormatException>(() => c.GetActiveNamespaceIds());              // not ascending
        Assert.Throws<FormatException>(() => c.RefreshNamespaces());
        Assert.Equal([1u], c.Namespaces.Select(n => n.Id));                           // the old list stays

        Tamper(IdentifyCns.AllocatedNamespaces, d => BinaryPrimitives.WriteUInt32LittleEndian(d, 9));
        var nn = Assert.Throws<DeviceProtocolViolationException>(() => c.GetAllocatedNamespaceIds());
        Assert.Contains("NN is 8", nn.Message);

        Tamper(IdentifyCns.SubsystemControllers, d => BinaryPrimitives.WriteUInt16LittleEndian(d, 5000));
        Assert.Throws<FormatException>(() => c.GetSubsystemControllers());             // more than 2047 identifiers
        Tamper(IdentifyCns.AttachedControllers, d => ControllerList.Write(d, [4, 2]));
        Assert.Throws<DeviceProtocolViolationException>(() => c.GetAttachedControllers(1));

        Tamper(IdentifyCns.Namespace, d => d[26] = 7);                                 // FLBAS names a format not listed
        Assert.Throws<FormatException>(() => c.IdentifyNamespace(1));

        dev.Model.TamperNamespaceIdentify = null;
        Assert.Equal([1u], c.GetActiveNamespaceIds());
        StillAnswers(c);
    }

    [Fact]
    public void HostileDescriptorAndControllerListsAreRejected()
    {
        var bad = new byte[4096];
        bad[0] = (byte)NamespaceIdentifierType.Nguid;
        bad[1] = 8;    // an NGUID is 16 bytes
        Assert.Throws<FormatException>(() => NamespaceIdentifier.ParseList(bad));
        var list = new byte[4096];
        BinaryPrimitives.WriteUInt16LittleEndian(list, 4000);
        Assert.Throws<FormatException>(() => ControllerList.Parse(list));
        var ids = new byte[4096];
        BinaryPrimitives.WriteUInt32LittleEndian(ids, 5);
        BinaryPrimitives.WriteUInt32LittleEndian(ids.AsSpan(4), 3);
        Assert.Throws<FormatException>(() => NamespaceIdList.Parse(ids));
    }

    [Fact]
    public async Task CreateAttachAndIoOverTheSocket()
    {
        using var dev = New(NvmeTransport.Socket);
        using var c = Open(dev);
        uint nsid = c.CreateNamespace(new NamespaceCreateOptions(512));
        c.AttachNamespace(nsid);
        var ns = c.GetNamespace(nsid);
        Assert.Equal(512, ns.BlockSize);
        Assert.NotEmpty(c.GetNamespaceIdentifiers(nsid));
        using var q = c.CreateIoQueue();
        using var data = dev.Dma.Allocate(4096);
        using var back = dev.Dma.Allocate(4096);
        new Random(11).NextBytes(data.Span);
        await q.WriteAsync(ns, 500, 8, data, cancellationToken: Ct);
        await q.ReadAsync(ns, 500, 8, back, cancellationToken: Ct);
        Assert.Equal(data.Span.ToArray(), back.Span.ToArray());
        Assert.True(await q.CompareAsync(ns, 500, 8, data, cancellationToken: Ct));
        await q.DeallocateAsync(ns, [(500UL, 4)], cancellationToken: Ct);
        Assert.False(await q.CompareAsync(ns, 500, 8, data, cancellationToken: Ct));
        c.Format(nsid, 1, SecureErase.UserData);
        Assert.Equal(4096, c.GetNamespace(nsid).BlockSize);
        c.DetachNamespace(nsid);
        c.DeleteNamespace(nsid);
        Assert.Equal([1u], c.GetAllocatedNamespaceIds());
    }
}
