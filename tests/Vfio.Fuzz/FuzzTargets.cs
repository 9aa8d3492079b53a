using System.Buffers.Binary;
using System.Collections;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Spec.Nvme;
using Vfio.Spec.Virtio;
using Vfio.User.Protocol;
using Vfio.VirtioNet;
using Vfio.VirtioNet.Virtio;

namespace Vfio.Fuzz;

/// <summary>One harness: feeds one input to one parser; returns normally for accepted or documented-rejected input.</summary>
public delegate void FuzzTarget(ReadOnlySpan<byte> data);

/// <summary>
/// The fuzz harnesses, by name. Each one catches only the exceptions its parser documents for malformed input
/// (FormatException, ArgumentException where the API says so, the parser's own named exceptions); anything else
/// escapes and is a crash, for afl-fuzz and for the corpus replay test in Vfio.Spec.Tests alike (this file is
/// linked into that project, so both run the same code).
/// </summary>
public static partial class FuzzTargets
{
    /// <summary>The harnesses, most valuable first.</summary>
    public static IReadOnlyDictionary<string, FuzzTarget> All { get; } = new Dictionary<string, FuzzTarget>(StringComparer.Ordinal)
    {
        ["nvme-id-ctrl"] = IdentifyControllerTarget,
        ["nvme-id-ns"] = IdentifyNamespaceTarget,
        ["nvme-ns-desc"] = NamespaceDescriptorsTarget,
        ["nvme-pages"] = NvmePagesTarget,
        ["vfio-user-msg"] = VfioUserMessageTarget,
        ["vfio-region-info"] = RegionInfoTarget,
        ["pci-caps"] = PciCapabilitiesTarget,
        ["vfio-iommu-info"] = IommuInfoTarget,
        ["virtio-used-ring"] = VirtioUsedRingTarget,
        ["nvme-completions"] = NvmeCompletionsTarget,
    };

    /// <summary>Runs every file under <paramref name="directory"/> through <paramref name="target"/>; returns the count.</summary>
    public static int Replay(FuzzTarget target, string directory)
    {
        int n = 0;
        foreach (var file in Directory.EnumerateFiles(directory).Order(StringComparer.Ordinal))
        {
            target(File.ReadAllBytes(file));
            n++;
        }
        return n;
    }

    /// <summary>Identify Controller (CNS 01h) and every field nvme-cli's id-ctrl prints. ArgumentException: shorter than 4096 bytes (documented).</summary>
    private static void IdentifyControllerTarget(ReadOnlySpan<byte> data)
    {
        IdentifyController c;
        try { c = IdentifyController.Parse(data); }
        catch (ArgumentException) { return; }
        Consume(c.NvmeCliFields());
        _ = c.MaxTransferBytes(12);
    }

    /// <summary>Identify Namespace (CNS 00h) and its nvme-cli fields. ArgumentException: short; FormatException: FLBAS points nowhere usable.</summary>
    private static void IdentifyNamespaceTarget(ReadOnlySpan<byte> data)
    {
        IdentifyNamespace ns;
        try { ns = IdentifyNamespace.Parse(data); }
        catch (ArgumentException) { return; }
        catch (FormatException) { return; }
        Consume(ns.NvmeCliFields());
        _ = ns.BlockSize + ns.MetadataSize;
    }

    /// <summary>Namespace Identification Descriptor list (CNS 03h). FormatException documented.</summary>
    private static void NamespaceDescriptorsTarget(ReadOnlySpan<byte> data)
    {
        try
        {
            foreach (var d in NamespaceIdentifier.ParseList(data)) { _ = d.Hex; }
        }
        catch (FormatException) { }
    }

    /// <summary>
    /// The smaller NVMe structures, the first byte choosing which one reads the rest: log pages (SMART, error, firmware
    /// slot, commands supported and effects, changed namespaces), lists (controller, namespace ID, active NSIDs), the
    /// I/O command set combinations and the NVM command set Identify Controller. All reject with FormatException.
    /// </summary>
    private static void NvmePagesTarget(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) { return; }
        var d = data[1..];
        try
        {
            switch (data[0] % 10)
            {
                case 0: Consume(SmartLog.Parse(d).NvmeCliFields()); break;
                case 1: foreach (var e in ErrorLogEntry.ParseLog(d, 64)) { Consume(e.NvmeCliFields()); } break;
                case 2: Consume(FirmwareSlotLog.Parse(d).NvmeCliFields()); break;
                case 3: _ = CommandEffectsLog.Parse(d).Admin.Count; break;
                case 4: _ = ChangedNamespaceList.Parse(d).Nsids.Count; break;
                case 5: _ = ControllerList.Parse(d).Length; break;
                case 6: _ = NamespaceIdList.Parse(d, d.Length > 0 ? d[0] : 0u).Count; break;
                case 7: _ = IdentifyNamespace.ParseActiveList(d).Count; break;
                case 8: _ = IoCommandSetCombinations.Parse(d).Count; break;
                default: Consume(NvmIdentifyController.Parse(d).NvmeCliFields()); break;
            }
        }
        catch (FormatException) { }
    }

    /// <summary>
    /// A vfio-user message as it arrives on the socket: the 16-byte header, then the body decoded by the reader for
    /// the header's command, as the server (commands) and the client (replies) do. Malformed bodies are rejected with
    /// VfioUserCommandException / VfioUserProtocolException.
    /// </summary>
    private static void VfioUserMessageTarget(ReadOnlySpan<byte> data)
    {
        if (data.Length < MessageHeader.Length) { return; }
        var header = MessageHeader.Read(data);
        var body = data[MessageHeader.Length..];
        try
        {
            switch (header.Command)
            {
                case Command.Version: _ = VersionMessage.Read(body).Capabilities; break;
                case Command.DmaMap: _ = DmaMapRequest.Read(body); break;
                case Command.DmaUnmap: _ = DmaUnmapRequest.Read(body); break;
                case Command.DeviceGetInfo: _ = DeviceInfoReply.Read(body); break;
                case Command.DeviceGetRegionInfo: _ = RegionInfoMessage.Read(body); break;
                case Command.DeviceGetIrqInfo: _ = IrqInfoMessage.Read(body); break;
                case Command.DeviceSetIrqs: _ = SetIrqsRequest.Read(body); break;
                case Command.RegionRead or Command.RegionWrite: _ = RegionAccess.Read(body, header.Command); break;
                case Command.DmaRead or Command.DmaWrite: _ = DmaAccess.Read(body, header.Command); break;
                default: break;
            }
        }
        catch (VfioUserCommandException) { }
        catch (VfioUserProtocolException) { }
    }

    /// <summary>A VFIO_DEVICE_GET_REGION_INFO reply and its capability chain (sparse mmap, region type, MSI-X mappable). VfioException documented.</summary>
    private static void RegionInfoTarget(ReadOnlySpan<byte> data)
    {
        try { _ = VfioCapabilityChain.ParseRegionInfo(data); }
        catch (VfioException) { }
    }

    /// <summary>
    /// The PCI capability walks over a config space image (up to 4 KiB; bytes past the input read as 0): the standard
    /// list from the Capabilities Pointer (0x34) when Status bit 4 says there is one, and the extended list from 0x100.
    /// Both must end on any content (looping and out-of-range pointers included) without throwing.
    /// </summary>
    private static void PciCapabilitiesTarget(ReadOnlySpan<byte> data)
    {
        var space = new byte[PciConfigSpace.ExtendedSize];
        data[..Math.Min(data.Length, space.Length)].CopyTo(space);
        bool hasList = (space[6] & 0x10) != 0;   // Status bit 4: Capabilities List (PCI 3.0 §6.2.3)
        var standard = PciConfigSpace.WalkCapabilities(hasList, space[0x34], at => BinaryPrimitives.ReadUInt16LittleEndian(space.AsSpan(at)));
        var extended = PciConfigSpace.WalkExtendedCapabilities(at => BinaryPrimitives.ReadUInt32LittleEndian(space.AsSpan(at)));
        if (standard.Count > 48 || extended.Count > (PciConfigSpace.ExtendedSize - PciConfigSpace.ConventionalSize) / 4)
        {
            throw new InvalidOperationException($"capability walk did not stop: {standard.Count} standard, {extended.Count} extended");
        }
    }

    /// <summary>A type1 VFIO_IOMMU_GET_INFO reply and its capability chain (IOVA ranges, DMA mappings available). VfioException documented.</summary>
    private static void IommuInfoTarget(ReadOnlySpan<byte> data)
    {
        try
        {
            var info = VfioCapabilityChain.ParseIommuType1Info(data);
            foreach (var r in info.IovaRanges)
            {
                if (r.End < r.Start) { throw new InvalidOperationException($"IOVA range 0x{r.Start:x}..0x{r.End:x} accepted backwards"); }
            }
        }
        catch (VfioException) { }
    }

    /// <summary>
    /// The virtio used-ring path (virtio 1.2 §2.7.8) with the input playing a hostile device. Byte 0 sets the queue size
    /// (1 to 8) and the chains first offered; then each op byte is: write used idx (2 bytes), write a used element
    /// (slot, id, len: 9 bytes), scribble over a descriptor (index, 16 bytes), offer one more buffer, or let the driver
    /// consume what is used. The driver may only answer with DeviceProtocolViolationException (which faults the queue)
    /// or VirtqueueFaultedException; a token handed back that is not in flight, twice, or with a length past what was
    /// offered, or descriptors lost, is a crash. Ends with the reset path: every token still in flight comes back once.
    /// </summary>
    private static unsafe void VirtioUsedRingTarget(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) { return; }
        int size = 1 << (data[0] & 3);
        var layout = SplitQueueLayout.For(size);
        var memory = (byte*)NativeMemory.AlignedAlloc((nuint)layout.TotalSize, 64);
        try
        {
            NativeMemory.Clear(memory, (nuint)layout.TotalSize);
            var ring = new SplitVirtqueue(layout, (nint)memory, new DmaAddress(0x1_0000_0000), name: "fuzzed virtqueue");
            var offered = new Dictionary<int, uint>();   // token -> bytes the device may report
            int nextToken = 1;
            void Offer()
            {
                uint length = (uint)(64 * nextToken % 4096 + 64);
                int id = ring.Enqueue(new DmaAddress(0x2_0000_0000 + (ulong)nextToken * 4096), length, VirtqDescriptorFlags.Write, nextToken);
                if (id >= 0) { offered.Add(nextToken, length); ring.Publish(); }
                nextToken++;
            }
            for (int i = (data[0] >> 2) % (size + 1); i > 0; i--) { Offer(); }
            int at = 1;
            while (at < data.Length)
            {
                byte op = data[at++];
                try
                {
                    switch (op % 5)
                    {
                        case 0 when Take(data, ref at, 2, out var b):
                            *(ushort*)(memory + layout.UsedOffset + VirtqUsedLayout.Index) = BinaryPrimitives.ReadUInt16LittleEndian(b);
                            break;
                        case 1 when Take(data, ref at, 9, out var b):
                            byte* e = memory + layout.UsedOffset + VirtqUsedLayout.ElementOffset(b[0] % size);
                            *(uint*)(e + VirtqUsedLayout.ElementId) = BinaryPrimitives.ReadUInt32LittleEndian(b[1..]);
                            *(uint*)(e + VirtqUsedLayout.ElementLength) = BinaryPrimitives.ReadUInt32LittleEndian(b[5..]);
                            break;
                        case 2 when Take(data, ref at, 17, out var b):
                            b[1..].CopyTo(new Span<byte>(memory + layout.DescriptorOffset + VirtqDescriptorLayout.Size * (b[0] % size), VirtqDescriptorLayout.Size));
                            break;
                        case 3:
                            if (!ring.IsFaulted) { Offer(); }
                            break;
                        case 4:
                            for (int ready = ring.UsedCount(); ready > 0; ready--)
                            {
                                int token = ring.TakeUsed(out uint len);
                                if (!offered.Remove(token, out uint limit)) { throw new InvalidOperationException($"used ring handed back token {token}, which is not in flight"); }
                                if (len > limit) { throw new InvalidOperationException($"used len {len} accepted for a {limit}-byte buffer"); }
                            }
                            break;
                    }
                }
                catch (DeviceProtocolViolationException) when (ring.IsFaulted) { }
                catch (VirtqueueFaultedException) when (ring.IsFaulted) { }
                if (ring.FreeDescriptors + offered.Count != size || ring.ChainsInFlight != offered.Count)
                {
                    throw new InvalidOperationException($"{ring.FreeDescriptors} free descriptors and {ring.ChainsInFlight} chains in flight, but {offered.Count} buffers offered in a queue of {size}");
                }
            }
            // After a device reset every chain still in flight comes back, each once.
            ring.ReleaseInFlight(token =>
            {
                if (!offered.Remove(token)) { throw new InvalidOperationException($"reset released token {token}, which is not in flight"); }
            });
            if (offered.Count != 0 || ring.FreeDescriptors != size) { throw new InvalidOperationException($"reset lost {offered.Count} buffers"); }
            ring.ResetState();
        }
        finally
        {
            NativeMemory.AlignedFree(memory);
        }
    }

    /// <summary>The next <paramref name="n"/> bytes of the input; false (and the input used up) when fewer remain.</summary>
    private static bool Take(ReadOnlySpan<byte> data, ref int at, int n, out ReadOnlySpan<byte> bytes)
    {
        bytes = at + n <= data.Length ? data.Slice(at, n) : default;
        at += n;
        return !bytes.IsEmpty;
    }

    /// <summary>Walks values the way a JSON writer would, so lazily computed fields run too.</summary>
    [SuppressMessage("Globalization", "CA1305", Justification = "the text is discarded")]
    private static void Consume(IEnumerable fields)
    {
        foreach (var item in fields)
        {
            switch (item)
            {
                case ValueTuple<string, object> (_, var value): ConsumeValue(value); break;
                default: ConsumeValue(item); break;
            }
        }
    }

    [SuppressMessage("Globalization", "CA1305", Justification = "the text is discarded")]
    private static void ConsumeValue(object? value)
    {
        switch (value)
        {
            case null: break;
            case string s: _ = s.Length; break;
            case IEnumerable e: Consume(e); break;
            default: _ = value.ToString(); break;
        }
    }
}
