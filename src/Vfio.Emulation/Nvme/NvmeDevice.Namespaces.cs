using System.Buffers.Binary;
using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

/// <summary>
/// Namespaces of the model (NVMe 1.4 §5.15.2, §5.19, §5.20, §5.23, §6.2): a table of up to NN namespaces, each with
/// storage of its own (allocated when the namespace is created, freed with it), its LBA format (0: 512 bytes, 1: 4096
/// bytes, no metadata), whether it is attached to this one controller, and identifiers derived from the serial number,
/// the NSID and a creation counter, so a re-created namespace never reuses an NGUID or EUI64 (§7.11).
/// <para>Concurrency: admin commands change the table under the controller lock; the I/O path, which never takes that
/// lock, reads a table entry once per command. Entries are immutable and replaced whole (attach, detach, format), so a
/// command sees one consistent namespace: one that raced a format or a delete works on the storage it started with.</para>
/// </summary>
public sealed partial class NvmeDevice
{
    /// <summary>CNTLID (Identify Controller bytes 79:78) of the model: the one controller of its NVM subsystem.</summary>
    public const ushort ControllerIdentifier = 1;

    /// <summary>LBADS of the LBA formats offered: format 0 is 512-byte blocks, format 1 4096-byte blocks.</summary>
    private static readonly byte[] s_formatShifts = [9, 12];

    private EmulatedNamespace?[] _namespaces = [];
    private ulong _namespaceGeneration;

    private sealed record EmulatedNamespace(uint Id, byte[] Storage, int FormatIndex, bool Attached, bool Shared, ulong Generation)
    {
        public int BlockSize => 1 << s_formatShifts[FormatIndex];

        /// <summary>NSZE: the storage keeps its bytes across formats, so the block count follows the block size.</summary>
        public ulong BlockCount => (ulong)Storage.Length / (ulong)BlockSize;

        public bool InRange(ulong lba, long blocks) => blocks >= 0 && lba < BlockCount && (ulong)blocks <= BlockCount - lba;

        /// <summary>The bytes of a range <see cref="InRange"/> accepted (at most 1 GiB, so an int).</summary>
        public Span<byte> Blocks(ulong lba, long blocks) => Storage.AsSpan((int)(lba * (ulong)BlockSize), (int)(blocks * BlockSize));
    }

    /// <summary>The bytes of namespace <paramref name="nsid"/> (block n at n × its block size); empty when it is not allocated.</summary>
    public Span<byte> NamespaceDisk(uint nsid) => Lookup(nsid)?.Storage ?? [];

    /// <summary>The block size namespace <paramref name="nsid"/> is formatted with, or 0 when it is not allocated.</summary>
    public int NamespaceBlockSize(uint nsid) => Lookup(nsid)?.BlockSize ?? 0;

    /// <summary>True when namespace <paramref name="nsid"/> is allocated and attached to the controller (active).</summary>
    public bool IsNamespaceAttached(uint nsid) => Lookup(nsid)?.Attached ?? false;

    /// <summary>The allocated NSIDs, ascending.</summary>
    public IReadOnlyList<uint> AllocatedNamespaceIds
    {
        get
        {
            var ids = new List<uint>();
            for (int i = 0; i < _namespaces.Length; i++) { if (Volatile.Read(ref _namespaces[i]) is not null) { ids.Add((uint)i + 1); } }
            return ids;
        }
    }

    /// <summary>UNVMCAP: bytes of the total capacity no namespace holds.</summary>
    public ulong UnallocatedCapacityBytes
    {
        get
        {
            ulong used = 0;
            for (int i = 0; i < _namespaces.Length; i++) { used += (ulong)(Volatile.Read(ref _namespaces[i])?.Storage.Length ?? 0); }
            return _options.EffectiveTotalCapacityBytes - used;
        }
    }

    /// <summary>
    /// Fault injection: called (under the controller lock) with the CNS and the 4 KiB of every namespace Identify (CNS 00h,
    /// 02h, 03h, 10h-13h) just before it goes to the host, to write what a broken or hostile controller would.
    /// </summary>
    public Action<IdentifyCns, byte[]>? TamperNamespaceIdentify { get; set; }

    /// <summary>Namespace Management and Attachment are offered only when there is more than one NSID to manage.</summary>
    private bool NamespaceManagementOffered => _options.MaxNamespaces > 1;

    /// <summary>Called from the constructor: namespace 1 from the options, attached; NSIDs 2..NN unallocated.</summary>
    private void InitializeNamespaces()
    {
        _namespaces = new EmulatedNamespace?[_options.MaxNamespaces];
        _namespaces[0] = new EmulatedNamespace(1, new byte[_options.BlockCount * (ulong)_options.BlockSize],
            _options.BlockSize == 4096 ? 1 : 0, Attached: true, Shared: false, Generation: 0);
    }

    private EmulatedNamespace? Lookup(uint nsid) =>
        nsid >= 1 && nsid <= (uint)_namespaces.Length ? Volatile.Read(ref _namespaces[nsid - 1]) : null;

    /// <summary>The namespace an I/O command names, when it is active (§6.1.2: otherwise Invalid Namespace or Format).</summary>
    private EmulatedNamespace? ActiveNamespace(uint nsid) => Lookup(nsid) is { Attached: true } ns ? ns : null;

    /// <summary>An NSID in 1..NN (§6.1.2: a valid NSID, whether or not it is allocated).</summary>
    private bool ValidNsid(uint nsid) => nsid >= 1 && nsid <= (uint)_namespaces.Length;

    /// <summary>Under the controller lock: replaces (or removes) a table entry and tells the Changed Namespace List.</summary>
    private void Store(uint nsid, EmulatedNamespace? ns)
    {
        Volatile.Write(ref _namespaces[nsid - 1], ns);
        OnNamespaceAttributeChanged(nsid);
    }

    // ------------------------------------------------------------------ Identify (§5.15)

    /// <summary>The Identify Controller fields of namespace management: CNTLID, OACS, TNVMCAP, UNVMCAP, NN, FNA (Figure 247).</summary>
    private void FillNamespaceManagementIdentity(Span<byte> data)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(data[78..], ControllerIdentifier);
        // OACS is shared with other optional commands: the bits are added to whatever was set before.
        var oacs = (OptionalAdminCommands)BinaryPrimitives.ReadUInt16LittleEndian(data[256..]) | OptionalAdminCommands.FormatNvm;
        if (NamespaceManagementOffered) { oacs |= OptionalAdminCommands.NamespaceManagement; }
        BinaryPrimitives.WriteUInt16LittleEndian(data[256..], (ushort)oacs);
        BinaryPrimitives.WriteUInt128LittleEndian(data[280..], _options.EffectiveTotalCapacityBytes);
        BinaryPrimitives.WriteUInt128LittleEndian(data[296..], UnallocatedCapacityBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(data[516..], (uint)_options.MaxNamespaces);
        // FNA: format and secure erase apply per namespace (bits 0, 1 clear); cryptographic erase is offered (bit 2).
        data[524] = 1 << 2;
    }

    /// <summary>Identify CNS 00h, 02h, 03h and 10h-13h; the 4 KiB <paramref name="data"/> goes to the host at the end.</summary>
    private NvmeStatus IdentifyNamespaces(in NvmeCommand c, byte[] data)
    {
        var cns = (IdentifyCns)(c.Cdw10 & 0xFF);
        ushort fromController = (ushort)(c.Cdw10 >> 16);
        if (cns is (IdentifyCns.AllocatedNamespaces or IdentifyCns.AllocatedNamespace or IdentifyCns.AttachedControllers or IdentifyCns.SubsystemControllers)
            && !NamespaceManagementOffered)
        {
            return Generic(GenericStatusCode.InvalidField);   // CNS values of Namespace Management are reserved without it (§5.15.1)
        }
        switch (cns)
        {
            case IdentifyCns.Namespace:
            case IdentifyCns.AllocatedNamespace:
                if (c.Nsid == NvmeCommand.AllNamespaces && NamespaceManagementOffered)
                {
                    // The capabilities common to every namespace: the LBA formats a new one may use (§5.15.2.1).
                    FillLbaFormats(data);
                    break;
                }
                if (!ValidNsid(c.Nsid)) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
                // An inactive NSID (or, for 11h, an unallocated one) gets a zero-filled structure.
                if (Lookup(c.Nsid) is { } named && (named.Attached || cns == IdentifyCns.AllocatedNamespace)) { FillNamespace(named, data); }
                break;
            case IdentifyCns.ActiveNamespaces:
            case IdentifyCns.AllocatedNamespaces:
            {
                if (c.Nsid >= 0xFFFF_FFFE) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
                int n = 0;
                for (uint id = c.Nsid + 1; id <= (uint)_namespaces.Length && n < NamespaceIdList.MaxEntries; id++)
                {
                    if (Lookup(id) is { } ns && (ns.Attached || cns == IdentifyCns.AllocatedNamespaces))
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(4 * n++), id);
                    }
                }
                break;
            }
            case IdentifyCns.NamespaceDescriptors:
            {
                if (ActiveNamespace(c.Nsid) is not { } ns) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
                NamespaceIdentifier.WriteList(data, Identifiers(ns));
                break;
            }
            case IdentifyCns.AttachedControllers:
            {
                if (!ValidNsid(c.Nsid)) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
                bool listed = Lookup(c.Nsid) is { Attached: true } && ControllerIdentifier >= fromController;
                ControllerList.Write(data, listed ? [ControllerIdentifier] : []);
                break;
            }
            case IdentifyCns.SubsystemControllers:
                ControllerList.Write(data, ControllerIdentifier >= fromController ? [ControllerIdentifier] : []);
                break;
            default:
                return Generic(GenericStatusCode.InvalidField);
        }
        TamperNamespaceIdentify?.Invoke(cns, data);
        return Transfer(c.Prp1, c.Prp2, data.Length, data, toHost: true);
    }

    private static void FillLbaFormats(Span<byte> data)
    {
        data[25] = (byte)(s_formatShifts.Length - 1);   // NLBAF, 0's based
        for (int i = 0; i < s_formatShifts.Length; i++)
        {
            // LBAF (Figure 251): MS 15:0 = 0, LBADS 23:16, RP 25:24 = 0 (best).
            BinaryPrimitives.WriteUInt32LittleEndian(data[(128 + 4 * i)..], (uint)s_formatShifts[i] << 16);
        }
    }

    /// <summary>Identify Namespace (Figure 245) of an allocated namespace.</summary>
    private void FillNamespace(EmulatedNamespace ns, Span<byte> data)
    {
        ulong blocks = ns.BlockCount;
        BinaryPrimitives.WriteUInt64LittleEndian(data, blocks);          // NSZE
        BinaryPrimitives.WriteUInt64LittleEndian(data[8..], blocks);     // NCAP: no thin provisioning
        BinaryPrimitives.WriteUInt64LittleEndian(data[16..], blocks);    // NUSE
        FillLbaFormats(data);
        data[26] = NamespaceCreateData.FlbasFor(ns.FormatIndex);          // FLBAS
        data[30] = (byte)(ns.Shared ? 1 : 0);                             // NMIC
        data[33] = 1;                                                     // DLFEAT: deallocated blocks read as zeroes
        BinaryPrimitives.WriteUInt128LittleEndian(data[48..], (ulong)ns.Storage.Length);   // NVMCAP
        Nguid(ns).CopyTo(data[104..]);
        Eui64(ns).CopyTo(data[120..]);
    }

    private IEnumerable<NamespaceIdentifier> Identifiers(EmulatedNamespace ns)
    {
        var uuid = Nguid(ns);
        // RFC 4122 version 4 and variant bits on a copy of the NGUID: a UUID distinct from it but as stable.
        uuid[6] = (byte)((uuid[6] & 0x0F) | 0x40);
        uuid[8] = (byte)((uuid[8] & 0x3F) | 0x80);
        uuid[0] ^= 0xA5;
        return
        [
            new(NamespaceIdentifierType.Eui64, Eui64(ns)),
            new(NamespaceIdentifierType.Nguid, Nguid(ns)),
            new(NamespaceIdentifierType.Uuid, uuid),
            new(NamespaceIdentifierType.CommandSetIdentifier, new byte[] { 0 }),   // CSI 0: the NVM command set
        ];
    }

    private byte[] Eui64(EmulatedNamespace ns)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, Hash(_options.Serial, ns.Id, ns.Generation, 0x45554936));
        return b;
    }

    private byte[] Nguid(EmulatedNamespace ns)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(b, Hash(_options.Serial, 0, 0, 0x4E475549));      // vendor half: the subsystem
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), Hash(_options.Serial, ns.Id, ns.Generation, 0x4E534944));
        return b;
    }

    /// <summary>FNV-1a over the serial and three numbers: deterministic, and never zero in practice.</summary>
    private static ulong Hash(string serial, uint nsid, ulong generation, uint salt)
    {
        ulong h = 0xcbf29ce484222325;
        foreach (char ch in serial) { h = (h ^ ch) * 0x100000001b3; }
        foreach (ulong v in (ReadOnlySpan<ulong>)[nsid, generation, salt])
        {
            for (int i = 0; i < 8; i++) { h = (h ^ ((v >> (8 * i)) & 0xFF)) * 0x100000001b3; }
        }
        return h == 0 ? 1 : h;
    }

    // ------------------------------------------------------------------ Namespace Management (§5.20)

    private NvmeStatus NamespaceManagement(in NvmeCommand c, ref uint dw0)
    {
        if (!NamespaceManagementOffered) { return Generic(GenericStatusCode.InvalidCommandOpcode); }
        switch ((NamespaceManagementSelect)(c.Cdw10 & 0xF))
        {
            case NamespaceManagementSelect.Create:
            {
                var raw = new byte[NamespaceCreateData.Size];
                var status = Transfer(c.Prp1, c.Prp2, raw.Length, raw, toHost: false);
                if (!status.IsSuccess) { return status; }
                var d = NamespaceCreateData.Read(raw);
                int format = (d.FormattedLbaSize & 0xF) | ((d.FormattedLbaSize >> 5) & 3) << 4;
                if (format >= s_formatShifts.Length || d.DataProtection != 0) { return Specific(CommandSpecificStatusCode.InvalidFormat); }
                if (d.SizeInBlocks == 0 || d.CapacityInBlocks == 0 || d.CapacityInBlocks > d.SizeInBlocks || (d.MultiPathSharing & ~1) != 0)
                {
                    return Generic(GenericStatusCode.InvalidField);
                }
                if (d.CapacityInBlocks < d.SizeInBlocks) { return Specific(CommandSpecificStatusCode.ThinProvisioningNotSupported); }
                ulong blockSize = 1UL << s_formatShifts[format];
                if (d.SizeInBlocks > UnallocatedCapacityBytes / blockSize) { return Specific(CommandSpecificStatusCode.NamespaceInsufficientCapacity); }
                int free = Array.IndexOf(_namespaces, null);
                if (free < 0) { return Specific(CommandSpecificStatusCode.NamespaceIdentifierUnavailable); }
                uint nsid = (uint)free + 1;
                // Storage is allocated only now, and the total capacity (at most 1 GiB) bounds what all namespaces hold.
                var storage = new byte[d.SizeInBlocks * blockSize];
                Store(nsid, new EmulatedNamespace(nsid, storage, format, Attached: false, Shared: (d.MultiPathSharing & 1) != 0,
                    Generation: ++_namespaceGeneration));
                dw0 = nsid;
                return default;
            }
            case NamespaceManagementSelect.Delete:
                if (c.Nsid == NvmeCommand.AllNamespaces)
                {
                    for (uint id = 1; id <= (uint)_namespaces.Length; id++)
                    {
                        if (Lookup(id) is not null) { Store(id, null); }
                    }
                    return default;
                }
                if (!ValidNsid(c.Nsid)) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
                if (Lookup(c.Nsid) is null) { return Generic(GenericStatusCode.InvalidField); }
                Store(c.Nsid, null);   // detached from every controller as it goes (§5.20)
                return default;
            default:
                return Generic(GenericStatusCode.InvalidField);
        }
    }

    // ------------------------------------------------------------------ Namespace Attachment (§5.19)

    private NvmeStatus NamespaceAttachment(in NvmeCommand c)
    {
        if (!NamespaceManagementOffered) { return Generic(GenericStatusCode.InvalidCommandOpcode); }
        var select = (NamespaceAttachmentSelect)(c.Cdw10 & 0xF);
        if (select is not (NamespaceAttachmentSelect.Attach or NamespaceAttachmentSelect.Detach)) { return Generic(GenericStatusCode.InvalidField); }
        if (!ValidNsid(c.Nsid)) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
        if (Lookup(c.Nsid) is not { } ns) { return Generic(GenericStatusCode.InvalidField); }
        var raw = new byte[ControllerList.Size];
        var status = Transfer(c.Prp1, c.Prp2, raw.Length, raw, toHost: false);
        if (!status.IsSuccess) { return status; }
        ushort[] ids;
        try { ids = ControllerList.Parse(raw); }
        catch (FormatException) { return Specific(CommandSpecificStatusCode.ControllerListInvalid); }
        // This subsystem has one controller: the list must name it, once.
        if (ids.Length != 1 || ids[0] != ControllerIdentifier) { return Specific(CommandSpecificStatusCode.ControllerListInvalid); }
        bool attach = select == NamespaceAttachmentSelect.Attach;
        if (attach && ns.Attached) { return Specific(CommandSpecificStatusCode.NamespaceAlreadyAttached); }
        if (!attach && !ns.Attached) { return Specific(CommandSpecificStatusCode.NamespaceNotAttached); }
        Store(c.Nsid, ns with { Attached = attach });
        return default;
    }

    // ------------------------------------------------------------------ Format NVM (§5.23)

    private NvmeStatus FormatNvm(in NvmeCommand c)
    {
        bool all = c.Nsid == NvmeCommand.AllNamespaces;
        if (!all && ActiveNamespace(c.Nsid) is null) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
        int format = c.FormatIndex;
        int protection = (int)((c.Cdw10 >> 5) & 7);
        // No format carries metadata, so protection information cannot be enabled (Figure 281: Invalid Format).
        if (format >= s_formatShifts.Length || protection != 0) { return Specific(CommandSpecificStatusCode.InvalidFormat); }
        var ses = c.FormatSecureErase;
        if (ses > SecureErase.Cryptographic) { return Generic(GenericStatusCode.InvalidField); }
        for (uint id = all ? 1 : c.Nsid; id <= (all ? (uint)_namespaces.Length : c.Nsid); id++)
        {
            if (ActiveNamespace(id) is not { } ns) { continue; }
            // Both erases leave every block reading zeroes; without one the bytes stay, read in the new block size.
            if (ses != SecureErase.None) { Array.Clear(ns.Storage); }
            Store(id, ns with { FormatIndex = format });
        }
        return default;
    }

    // ------------------------------------------------------------------ Compare (§6.2)

    private NvmeStatus Compare(in NvmeCommand c, EmulatedNamespace ns)
    {
        if (!ns.InRange(c.StartingLba, c.BlockCount)) { return Generic(GenericStatusCode.LbaOutOfRange); }
        int bytes = c.BlockCount * ns.BlockSize;
        // The host's data is read into a buffer of the model's: MDTS bounds it, and without MDTS so does 1 MiB here.
        int limit = _options.Mdts != 0 ? 4096 << _options.Mdts : 1 << 20;
        if (bytes > limit) { return Generic(GenericStatusCode.InvalidField); }
        var host = new byte[bytes];
        var status = Transfer(c.Prp1, c.Prp2, bytes, host, toHost: false);
        if (!status.IsSuccess) { return status; }
        return ns.Blocks(c.StartingLba, c.BlockCount).SequenceEqual(host)
            ? default
            : NvmeStatus.Create(StatusCodeType.MediaError, (byte)MediaErrorStatusCode.CompareFailure, doNotRetry: true);
    }
}
