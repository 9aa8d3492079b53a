using System.Buffers.Binary;
using System.Text;
using Vfio.Spec.Nvme;
using Vfio.User.Protocol;

namespace Vfio.Fuzz;

/// <summary>
/// Writes the seed corpus (tests/Vfio.Fuzz/corpus/TARGET/): a few small valid inputs per harness, built with the
/// library's own writers where it has them so the seeds follow the structures the code accepts. Run with
/// <c>Vfio.Fuzz --make-seeds DIR</c>; the output is committed.
/// </summary>
internal static class Seeds
{
    public static void Write(string root)
    {
        Put(root, "nvme-id-ctrl", "qemu-like", IdentifyController());
        Put(root, "nvme-id-ctrl", "zeroes", new byte[IdentifyControllerSize]);
        Put(root, "nvme-id-ns", "one-format", IdentifyNamespace(formats: 1, flbas: 0));
        Put(root, "nvme-id-ns", "four-formats", IdentifyNamespace(formats: 4, flbas: 2));
        Put(root, "nvme-ns-desc", "eui-nguid-uuid-csi", Descriptors());
        Put(root, "nvme-pages", "smart", Selected(0, Filled(512, 0x01)));
        Put(root, "nvme-pages", "error-log", Selected(1, ErrorLog()));
        Put(root, "nvme-pages", "fw-slot", Selected(2, FirmwareSlots()));
        Put(root, "nvme-pages", "effects", Selected(3, Effects()));
        Put(root, "nvme-pages", "changed-ns", Selected(4, Nsids(1, 2, 7)));
        Put(root, "nvme-pages", "ctrl-list", Selected(5, ControllerListOf(0, 1, 5)));
        Put(root, "nvme-pages", "ns-id-list", Selected(6, Nsids(1, 3, 4)));
        Put(root, "nvme-pages", "active-list", Selected(7, Nsids(1, 2)));
        Put(root, "nvme-pages", "iocs", Selected(8, IoCommandSets()));
        Put(root, "nvme-pages", "nvm-id-ctrl", Selected(9, Filled(16, 0x03)));
        Put(root, "vfio-user-msg", "version", Message(Command.Version, new VersionMessage(0, 1, new VersionCapabilities()).Encode()));
        Put(root, "vfio-user-msg", "dma-map", Message(Command.DmaMap, Body(DmaMapRequest.Length, b =>
            new DmaMapRequest(DmaMapFlags.Read | DmaMapFlags.Write, 0, 0x10_0000, 0x1000).Write(b))));
        Put(root, "vfio-user-msg", "region-read", Message(Command.RegionRead, Body(16, b =>
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b, 0x14);
            BinaryPrimitives.WriteUInt32LittleEndian(b[8..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(b[12..], 4);
        })));
        Put(root, "vfio-user-msg", "irq-info", Message(Command.DeviceGetIrqInfo, Body(16, b =>
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(b[8..], 2);
            BinaryPrimitives.WriteUInt32LittleEndian(b[12..], 1);
        })));
        Put(root, "vfio-region-info", "plain-bar", RegionInfo(withSparse: false));
        Put(root, "vfio-region-info", "sparse-mmap", RegionInfo(withSparse: true));
        Put(root, "pci-caps", "nvme-like", ConfigSpace());
        Put(root, "vfio-iommu-info", "ranges-and-avail", IommuInfo(withCaps: true));
        Put(root, "vfio-iommu-info", "page-sizes-only", IommuInfo(withCaps: false));
        Put(root, "virtio-used-ring", "in-order", [0x13, .. Used(0, 0, 64), .. Used(1, 1, 10), .. UsedIdx(2), 4, 3, .. Used(2, 4, 0), .. UsedIdx(3), 4]);
        Put(root, "virtio-used-ring", "duplicate-id", [0x0f, .. Used(0, 0, 8), .. Used(1, 0, 8), .. UsedIdx(2), 4, 4]);
        Put(root, "virtio-used-ring", "rewritten-next", [0x0f, 2, 0, .. Filled(16, 0xff), .. Used(0, 0, 1), .. UsedIdx(1), 4, 3, 4]);
        Put(root, "virtio-used-ring", "idx-jump", [0x0b, .. UsedIdx(40), 4, 3]);
        // nvme-completions: byte 0 = (entries - 2) | (queue id - 1) << 4; ops 0 submit, 1 ring, 2 + 6k fetch (count op >> 3),
        // 3 complete (pick, status), 4 raw entry (where, 16 bytes), 5 reap.
        Put(root, "nvme-completions", "in-order", [0x06, 0, 0, 0, 1, 26, 3, 0, 0, 3, 0, 0, 3, 0, 0, 5]);
        Put(root, "nvme-completions", "out-of-order-failed", [0x16, 0, 0, 0, 0, 1, 26, 8, 3, 2, 0x81, 3, 0, 0x82, 5, 3, 0, 0x07, 3, 0, 0, 5]);
        Put(root, "nvme-completions", "wrap", [0x00, 0, 1, 8, 3, 0, 0, 5, 0, 1, 8, 3, 0, 0, 5, 0, 1, 8, 3, 0, 0, 5, 0, 1, 8, 3, 0, 0, 5]);
        Put(root, "nvme-completions", "duplicate-cid", [0x06, 0, 1, 8, 3, 0, 0, 4, 0x80, .. Cqe(1, 1, 0, phase: true), 5]);
        Put(root, "nvme-completions", "wrong-sqid", [0x06, 0, 1, 8, 4, 0x80, .. Cqe(1, 2, 0, phase: true), 5]);
        Put(root, "nvme-completions", "sqhd-past-tail", [0x06, 0, 1, 8, 4, 0x80, .. Cqe(5, 1, 0, phase: true), 5]);
        Put(root, "nvme-completions", "stale-phase", [0x06, 0, 1, 8, 4, 0x80, .. Cqe(1, 1, 0, phase: false), 5, 3, 0, 0, 5]);
    }

    private const int IdentifyControllerSize = 4096;

    private static void Put(string root, string target, string name, byte[] data)
    {
        var dir = Path.Combine(root, target);
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, name), data);
    }

    private static byte[] Filled(int length, byte value)
    {
        var b = new byte[length];
        b.AsSpan().Fill(value);
        return b;
    }

    private static byte[] Selected(byte selector, byte[] rest) => [selector, .. rest];

    private static byte[] Body(int length, SpanAction write)
    {
        var b = new byte[length];
        write(b);
        return b;
    }

    private delegate void SpanAction(Span<byte> b);

    private static byte[] Message(Command command, byte[] body)
    {
        var m = new byte[MessageHeader.Length + body.Length];
        MessageHeader.ForCommand(1, command, body.Length).Write(m);
        body.CopyTo(m, MessageHeader.Length);
        return m;
    }

    private static void Ascii(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        Encoding.ASCII.GetBytes(text, field);
    }

    /// <summary>The fields QEMU's emulated controller fills (NVMe 1.4 Figure 247 offsets).</summary>
    private static byte[] IdentifyController()
    {
        var b = new byte[IdentifyControllerSize];
        BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1b36);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 0x1af4);
        Ascii(b.AsSpan(4, 20), "deadbeef");
        Ascii(b.AsSpan(24, 40), "QEMU NVMe Ctrl");
        Ascii(b.AsSpan(64, 8), "7.2.0");
        b[77] = 7;                                                   // MDTS
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(80), 0x0001_0400); // VER 1.4
        b[512] = 0x66;                                               // SQES
        b[513] = 0x44;                                               // CQES
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(516), 256); // NN
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(520), 0x5f); // ONCS
        b[525] = 1;                                                  // VWC
        Encoding.ASCII.GetBytes("nqn.2019-08.org.qemu:deadbeef", b.AsSpan(768));
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2048), 2500); // PSD0 MP
        return b;
    }

    private static byte[] IdentifyNamespace(int formats, byte flbas)
    {
        var b = new byte[Spec.Nvme.IdentifyNamespace.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 0x4_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), 0x4_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 0x1000);
        b[25] = (byte)(formats - 1);
        b[26] = flbas;
        for (int i = 0; i < formats; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(128 + 4 * i), (uint)((9 + i) << 16) | (uint)(i % 2 * 8));
        }
        return b;
    }

    private static byte[] Descriptors()
    {
        var b = new byte[NamespaceIdentifier.ListSize];
        NamespaceIdentifier.WriteList(b,
        [
            new(NamespaceIdentifierType.Eui64, Filled(8, 0x11)),
            new(NamespaceIdentifierType.Nguid, Filled(16, 0x22)),
            new(NamespaceIdentifierType.Uuid, Filled(16, 0x33)),
            new(NamespaceIdentifierType.CommandSetIdentifier, new byte[1]),
        ]);
        return b;
    }

    private static byte[] ErrorLog()
    {
        var b = new byte[2 * 64];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 3);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), 0x42);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(12), 0x4004);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(64), 2);
        return b;
    }

    private static byte[] FirmwareSlots()
    {
        var b = new byte[512];
        b[0] = 0x11;
        Ascii(b.AsSpan(8, 8), "1.0");
        Ascii(b.AsSpan(16, 8), "1.1");
        return b;
    }

    private static byte[] Effects()
    {
        var b = new byte[CommandEffectsLog.Size];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(1024 + 4), 3);
        return b;
    }

    private static byte[] Nsids(params uint[] ids)
    {
        var b = new byte[64];
        for (int i = 0; i < ids.Length; i++) { BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4 * i), ids[i]); }
        return b;
    }

    private static byte[] ControllerListOf(params ushort[] ids)
    {
        var b = new byte[64];
        ControllerList.Write(b, ids);
        return b;
    }

    private static byte[] IoCommandSets()
    {
        var b = new byte[IoCommandSetCombinations.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(40), 5);
        return b;
    }

    /// <summary>
    /// A config space like QEMU's NVMe function: MSI-X at 0x40 -> PM at 0x80 -> PCIe at 0x90, and one extended
    /// capability (AER) at 0x100.
    /// </summary>
    private static byte[] ConfigSpace()
    {
        var b = new byte[PciConfigSpaceExtendedSize];
        BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1b36);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 0x0010);
        b[6] = 0x10;                 // Status: capabilities list
        b[0x34] = 0x40;
        b[0x40] = 0x11; b[0x41] = 0x80;
        b[0x80] = 0x01; b[0x81] = 0x90;
        b[0x90] = 0x10; b[0x91] = 0x00;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(0x100), 0x0001_0001); // AER v1, next 0
        return b;
    }

    private const int PciConfigSpaceExtendedSize = 4096;

    /// <summary>virtio-used-ring op 1: the device writes used element <paramref name="slot"/> = {id, len}.</summary>
    private static byte[] Used(byte slot, uint id, uint len)
    {
        var b = new byte[10];
        b[0] = 1;
        b[1] = slot;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), id);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(6), len);
        return b;
    }

    /// <summary>nvme-completions op 4's payload: a completion queue entry (NVMe 1.4 Figure 124), success status.</summary>
    private static byte[] Cqe(ushort sqhd, ushort sqid, ushort cid, bool phase)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), sqhd);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), sqid);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(12), cid);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(14), (ushort)(phase ? 1 : 0));
        return b;
    }

    /// <summary>virtio-used-ring op 0: the device writes used idx.</summary>
    private static byte[] UsedIdx(ushort idx) => [0, (byte)idx, (byte)(idx >> 8)];

    /// <summary>
    /// struct vfio_iommu_type1_info (24 bytes, PGSIZES) and optionally CAPS: an IOVA_RANGE capability (id 1) with two
    /// ranges, then DMA_AVAIL (id 2).
    /// </summary>
    private static byte[] IommuInfo(bool withCaps)
    {
        int size = withCaps ? 24 + 16 + 2 * 16 + 16 : 24;
        var b = new byte[size];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)size);                 // argsz
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), withCaps ? 3u : 1u); // PGSIZES (| CAPS)
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), 0x4020_1000);       // 4 KiB, 2 MiB, 1 GiB
        if (withCaps)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), 24);            // cap_offset
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(24), 1);             // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(26), 1);             // version
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(28), 72);            // next
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(32), 2);             // nr_iovas
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(40), 0);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(48), 0xfedf_ffff);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(56), 0xfef0_0000);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(64), 0xffff_ffff_ffff);
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(72), 2);             // VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(74), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(80), 65535);         // avail
        }
        return b;
    }

    /// <summary>struct vfio_region_info (32 bytes) and optionally a sparse-mmap capability with two areas.</summary>
    private static byte[] RegionInfo(bool withSparse)
    {
        int size = withSparse ? 32 + 8 + 8 + 2 * 16 : 32;
        var b = new byte[size];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)size);              // argsz
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), withSparse ? 0xfu : 0x7u); // READ|WRITE|MMAP (|CAPS)
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), withSparse ? 32u : 0u);    // cap_offset
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 0x4000);        // size
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), 0x10_0000_0000); // offset
        if (withSparse)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(32), 1);         // VFIO_REGION_INFO_CAP_SPARSE_MMAP
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(34), 1);         // version
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(40), 2);         // nr_areas
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(48), 0);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(56), 0x1000);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(64), 0x3000);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(72), 0x1000);
        }
        return b;
    }
}
