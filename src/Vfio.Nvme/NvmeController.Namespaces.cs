using Microsoft.Extensions.Logging;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>What <see cref="NvmeController.CreateNamespace"/> asks the controller for (NVMe 1.4 §5.20.1, Figure 263).</summary>
/// <param name="SizeBlocks">NSZE: the namespace size in logical blocks of the chosen format.</param>
/// <param name="CapacityBlocks">NCAP: blocks that may be allocated; 0 (the default) for <paramref name="SizeBlocks"/>. Below
/// it only on a controller with thin provisioning.</param>
/// <param name="LbaFormatIndex">The LBA format (an index into the formats Identify Namespace lists).</param>
/// <param name="Shared">NMIC bit 0: the namespace may be attached to more than one controller.</param>
public sealed record NamespaceCreateOptions(ulong SizeBlocks, ulong CapacityBlocks = 0, int LbaFormatIndex = 0, bool Shared = false);

/// <summary>
/// Namespaces: Identify Namespace and its lists (NVMe 1.4 §5.15), Namespace Management (§5.20), Namespace Attachment
/// (§5.19) and Format NVM (§5.23). Every call checks its arguments and what the controller says it supports (OACS)
/// before a command is sent, and checks the lists the controller returns before using them.
/// </summary>
public sealed partial class NvmeController
{
    /// <summary>Identify Namespace (CNS 00h) for an active namespace, or, with <see cref="NvmeCommand.AllNamespaces"/>,
    /// the capabilities common to every namespace (the LBA formats a new one may use).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN.</exception>
    /// <exception cref="ArgumentException">The namespace is not active (the controller returned a zeroed structure).</exception>
    /// <exception cref="FormatException">The structure selects an LBA format it does not list.</exception>
    public IdentifyNamespace IdentifyNamespace(uint nsid)
    {
        CheckNsid(nsid, nameof(nsid), allowAll: true);
        return ParseNamespace(Identify(IdentifyCns.Namespace, nsid), nsid, "active");
    }

    /// <summary>Identify Namespace for an allocated namespace, attached or not (CNS 11h; needs Namespace Management).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN.</exception>
    /// <exception cref="ArgumentException">The namespace is not allocated.</exception>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    public IdentifyNamespace IdentifyAllocatedNamespace(uint nsid)
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        CheckNsid(nsid, nameof(nsid), allowAll: false);
        return ParseNamespace(Identify(IdentifyCns.AllocatedNamespace, nsid), nsid, "allocated");
    }

    /// <summary>The namespace's identifiers (Namespace Identification Descriptor list, CNS 03h): EUI64, NGUID, UUID, CSI.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN.</exception>
    /// <exception cref="FormatException">The controller's list is malformed (a wrong or zero NIDL).</exception>
    public IReadOnlyList<NamespaceIdentifier> GetNamespaceIdentifiers(uint nsid)
    {
        CheckNsid(nsid, nameof(nsid), allowAll: false);
        return NamespaceIdentifier.ParseList(Identify(IdentifyCns.NamespaceDescriptors, nsid));
    }

    /// <summary>Active NSIDs above <paramref name="startAfter"/>, ascending (CNS 02h, 1024 per page, read to the end).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="startAfter"/> is FFFFFFFEh or above.</exception>
    /// <exception cref="FormatException">A list is not ascending.</exception>
    /// <exception cref="DeviceProtocolViolationException">A list names an NSID above NN.</exception>
    public IReadOnlyList<uint> GetActiveNamespaceIds(uint startAfter = 0) => ReadNamespaceList(IdentifyCns.ActiveNamespaces, startAfter);

    /// <summary>Allocated NSIDs above <paramref name="startAfter"/>, attached or not (CNS 10h; needs Namespace Management).</summary>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    public IReadOnlyList<uint> GetAllocatedNamespaceIds(uint startAfter = 0)
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        return ReadNamespaceList(IdentifyCns.AllocatedNamespaces, startAfter);
    }

    /// <summary>The controllers namespace <paramref name="nsid"/> is attached to (CNS 12h; needs Namespace Management).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN.</exception>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    public IReadOnlyList<ushort> GetAttachedControllers(uint nsid)
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        CheckNsid(nsid, nameof(nsid), allowAll: false);
        return ReadControllerList(IdentifyCns.AttachedControllers, nsid);
    }

    /// <summary>Every controller of the NVM subsystem (CNS 13h; needs Namespace Management).</summary>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    public IReadOnlyList<ushort> GetSubsystemControllers()
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        return ReadControllerList(IdentifyCns.SubsystemControllers, 0);
    }

    /// <summary>
    /// Creates a namespace (Namespace Management, create) and returns its NSID. The namespace is not attached: see
    /// <see cref="AttachNamespace"/>. <see cref="Identity"/> is read again, so its UNVMCAP is current.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size of 0, a capacity above the size, or an LBA format the
    /// controller does not list (or that carries metadata, which this driver does not support).</exception>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    /// <exception cref="NvmeCommandException">The controller refused, e.g. Namespace Insufficient Capacity (more than UNVMCAP)
    /// or Namespace Identifier Unavailable (every NSID is allocated).</exception>
    public uint CreateNamespace(NamespaceCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        if (options.SizeBlocks == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.SizeBlocks, "NamespaceCreateOptions.SizeBlocks: a namespace has at least 1 block");
        }
        ulong capacity = options.CapacityBlocks == 0 ? options.SizeBlocks : options.CapacityBlocks;
        if (capacity > options.SizeBlocks)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.CapacityBlocks,
                $"NamespaceCreateOptions.CapacityBlocks is 1..SizeBlocks ({options.SizeBlocks}), or 0 for SizeBlocks");
        }
        CheckFormatIndex(CommonFormats(), options.LbaFormatIndex, "NamespaceCreateOptions.LbaFormatIndex");
        var data = new byte[NamespaceCreateData.Size];
        new NamespaceCreateData(options.SizeBlocks, capacity, NamespaceCreateData.FlbasFor(options.LbaFormatIndex),
            MultiPathSharing: (byte)(options.Shared ? 1 : 0)).Write(data);
        uint nsid;
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            nsid = ExecuteAdminWithDataLocked(NvmeCommand.NamespaceManagement(NamespaceManagementSelect.Create, 0), data, NvmeDataDirection.ToDevice);
            if (nsid == 0 || nsid > Identity.NamespaceCount)
            {
                throw new DeviceProtocolViolationException(_device.Address, "Namespace Management (create) completion DW0",
                    $"NSID {nsid}, but NSIDs are 1..{Identity.NamespaceCount}");
            }
            Identity = Spec.Nvme.IdentifyController.Parse(IdentifyLocked(IdentifyCns.Controller, 0));
        }
        LogNamespaceCreated(_logger, _device.Address, nsid, options.SizeBlocks, options.LbaFormatIndex);
        return nsid;
    }

    /// <summary>
    /// Deletes namespace <paramref name="nsid"/> (Namespace Management, delete), which also detaches it. With
    /// <see cref="NvmeCommand.AllNamespaces"/> every namespace goes, which is refused unless <paramref name="allowAll"/> is
    /// true. <see cref="Namespaces"/> and <see cref="Identity"/> are read again. I/O still in flight to the namespace
    /// fails (Invalid Namespace or Format): stop it first.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN.</exception>
    /// <exception cref="ArgumentException">All namespaces were named without <paramref name="allowAll"/>.</exception>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    public void DeleteNamespace(uint nsid, bool allowAll = false)
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        if (nsid == NvmeCommand.AllNamespaces && !allowAll)
        {
            throw new ArgumentException("NSID FFFFFFFFh deletes every namespace and its data; pass allowAll: true to mean it", nameof(nsid));
        }
        CheckNsid(nsid, nameof(nsid), allowAll: true);
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            ExecuteAdminWithDataLocked(NvmeCommand.NamespaceManagement(NamespaceManagementSelect.Delete, nsid), [], NvmeDataDirection.None);
            Identity = Spec.Nvme.IdentifyController.Parse(IdentifyLocked(IdentifyCns.Controller, 0));
            Namespaces = DiscoverNamespaces();
        }
        LogNamespaceChanged(_logger, _device.Address, "deleted", nsid);
    }

    /// <summary>
    /// Attaches namespace <paramref name="nsid"/> to controllers (Namespace Attachment); with none given, to this one
    /// (<see cref="IdentifyController.ControllerId"/>). <see cref="Namespaces"/> is read again, so the namespace appears there.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0 or above NN, or more than 2047 controllers.</exception>
    /// <exception cref="ArgumentException">A controller is named twice.</exception>
    /// <exception cref="NvmeException">The controller does not support Namespace Management.</exception>
    /// <exception cref="NvmeCommandException">The controller refused (Namespace Already Attached, Controller List Invalid, ...).</exception>
    public void AttachNamespace(uint nsid, params ushort[] controllerIds) => Attachment(NamespaceAttachmentSelect.Attach, nsid, controllerIds);

    /// <summary>Detaches namespace <paramref name="nsid"/> from controllers (by default this one); see <see cref="AttachNamespace"/>.</summary>
    /// <exception cref="NvmeCommandException">The controller refused (Namespace Not Attached, ...).</exception>
    public void DetachNamespace(uint nsid, params ushort[] controllerIds) => Attachment(NamespaceAttachmentSelect.Detach, nsid, controllerIds);

    /// <summary>
    /// Formats namespace <paramref name="nsid"/> (or, with <see cref="NvmeCommand.AllNamespaces"/>, every active one) with LBA
    /// format <paramref name="lbaFormatIndex"/> (Format NVM), erasing as <paramref name="ses"/> says. The data is gone
    /// either way; the block size may change. <see cref="Namespaces"/> is read again: <see cref="NvmeNamespace"/> objects
    /// from before (and any <see cref="NvmeBlockDevice"/> opened with one) keep the old block size, so reopen block devices.
    /// Refused while any I/O queue of this controller has commands in flight; the caller must also not submit during the
    /// format (commands that race it fail or see either format).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nsid"/> is 0, above NN or not active; the format is not
    /// one the namespace lists (or carries metadata); <paramref name="ses"/> is not a defined setting.</exception>
    /// <exception cref="InvalidOperationException">I/O is in flight.</exception>
    /// <exception cref="NvmeException">The controller does not support Format NVM (OACS bit 1), or cryptographic erase (FNA bit 2).</exception>
    public void Format(uint nsid, int lbaFormatIndex, SecureErase ses = SecureErase.None)
    {
        RequireAdminCommands(OptionalAdminCommands.FormatNvm, "Format NVM");
        if (ses is not (SecureErase.None or SecureErase.UserData or SecureErase.Cryptographic))
        {
            throw new ArgumentOutOfRangeException(nameof(ses), ses, "None, UserData or Cryptographic");
        }
        if (ses == SecureErase.Cryptographic && (Identity.FormatNvmAttributes & 4) == 0)
        {
            throw new NvmeException("the controller does not support cryptographic erase (Identify Controller FNA bit 2)", _device.Address);
        }
        CheckNsid(nsid, nameof(nsid), allowAll: true);
        var targets = nsid == NvmeCommand.AllNamespaces ? GetActiveNamespaceIds() : [nsid];
        foreach (uint id in targets)
        {
            var data = Identify(IdentifyCns.Namespace, id);
            if (data.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(nsid), nsid, $"namespace {id} is not active on {_device.Address}; Format NVM needs an active namespace or FFFFFFFFh");
            }
            CheckFormatIndex(Spec.Nvme.IdentifyNamespace.Parse(data).LbaFormats, lbaFormatIndex, nameof(lbaFormatIndex));
        }
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            foreach (var q in _ioQueues)
            {
                if (q.Outstanding > 0)
                {
                    throw new InvalidOperationException($"I/O queue {q.QueueId} has {q.Outstanding} commands in flight; Format NVM waits for none");
                }
            }
            ExecuteAdminWithDataLocked(NvmeCommand.FormatNvm(nsid, lbaFormatIndex, ses), [], NvmeDataDirection.None);
            Namespaces = DiscoverNamespaces();
        }
        LogNamespaceChanged(_logger, _device.Address, $"formatted with LBA format {lbaFormatIndex} ({ses})", nsid);
    }

    /// <summary>
    /// Reads the active namespaces again and replaces <see cref="Namespaces"/> (after a namespace was attached, detached,
    /// formatted or resized outside this controller, or on a Namespace Attribute Changed notice). <see cref="NvmeNamespace"/>
    /// objects from before stay as they were: look namespaces up again with <see cref="GetNamespace"/>.
    /// </summary>
    public IReadOnlyList<NvmeNamespace> RefreshNamespaces()
    {
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            Namespaces = DiscoverNamespaces();
            return Namespaces;
        }
    }

    // ---------------------------------------------------------------- helpers

    private void Attachment(NamespaceAttachmentSelect select, uint nsid, ushort[]? controllerIds)
    {
        RequireAdminCommands(OptionalAdminCommands.NamespaceManagement, "Namespace Management");
        CheckNsid(nsid, nameof(nsid), allowAll: false);
        ushort[] ids = controllerIds is null || controllerIds.Length == 0 ? [Identity.ControllerId] : controllerIds;
        if (ids.Length > ControllerList.MaxEntries)
        {
            throw new ArgumentOutOfRangeException(nameof(controllerIds), ids.Length, $"a controller list holds 1..{ControllerList.MaxEntries} controllers");
        }
        if (ids.Distinct().Count() != ids.Length)
        {
            throw new ArgumentException("a controller is named more than once", nameof(controllerIds));
        }
        var data = new byte[ControllerList.Size];
        ControllerList.Write(data, ids);
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            ExecuteAdminWithDataLocked(NvmeCommand.NamespaceAttachment(select, nsid), data, NvmeDataDirection.ToDevice);
            Namespaces = DiscoverNamespaces();
        }
        LogNamespaceChanged(_logger, _device.Address, select == NamespaceAttachmentSelect.Attach ? "attached" : "detached", nsid);
    }

    /// <summary>NSIDs are 1..NN, and FFFFFFFFh where the command allows it (NVMe 1.4 §6.1.2).</summary>
    private void CheckNsid(uint nsid, string parameter, bool allowAll)
    {
        if (allowAll && nsid == NvmeCommand.AllNamespaces) { return; }
        uint nn = Identity.NamespaceCount;
        if (nsid == 0 || nsid > nn)
        {
            throw new ArgumentOutOfRangeException(parameter, nsid,
                $"NSIDs on {_device.Address} are 1..{nn} (Identify Controller NN){(allowAll ? ", or FFFFFFFFh for all" : "")}");
        }
    }

    private void RequireAdminCommands(OptionalAdminCommands needed, string name)
    {
        if ((Identity.OptionalAdminCommands & needed) != needed)
        {
            throw new NvmeException($"the controller does not support {name} (Identify Controller OACS 0x{(ushort)Identity.OptionalAdminCommands:x4})",
                _device.Address);
        }
    }

    private IdentifyNamespace ParseNamespace(byte[] data, uint nsid, string state)
    {
        // A zero-filled structure is how the controller answers for an NSID that is not active (§5.15.2.1).
        if (nsid != NvmeCommand.AllNamespaces && data.AsSpan().IndexOfAnyExcept((byte)0) < 0)
        {
            throw new ArgumentException($"namespace {nsid} is not {state} on {_device.Address}", nameof(nsid));
        }
        return Spec.Nvme.IdentifyNamespace.Parse(data);
    }

    /// <summary>The LBA formats a new namespace may use: the common capabilities (NSID FFFFFFFFh), else namespace 1's.</summary>
    private IReadOnlyList<LbaFormat> CommonFormats()
    {
        try
        {
            return Spec.Nvme.IdentifyNamespace.Parse(Identify(IdentifyCns.Namespace, NvmeCommand.AllNamespaces)).LbaFormats;
        }
        catch (Exception e) when (e is NvmeCommandException or FormatException)
        {
            return Namespaces.Count > 0 ? Namespaces[0].Identify.LbaFormats : [];
        }
    }

    private static void CheckFormatIndex(IReadOnlyList<LbaFormat> formats, int index, string parameter)
    {
        if (formats.Count == 0 && index is >= 0 and <= 63) { return; }   // nothing to check against: the controller decides
        if (index < 0 || index >= formats.Count)
        {
            throw new ArgumentOutOfRangeException(parameter, index, $"the namespace lists LBA formats 0..{formats.Count - 1}");
        }
        var f = formats[index];
        if (f.DataShift is < 9 or > 31 || f.MetadataSize != 0)
        {
            throw new ArgumentOutOfRangeException(parameter, index,
                $"LBA format {index} ({f.BlockSize} bytes, {f.MetadataSize} metadata bytes) is not usable by this driver: it needs 512 bytes or more and no metadata");
        }
    }

    private List<uint> ReadNamespaceList(IdentifyCns cns, uint startAfter)
    {
        if (startAfter >= 0xFFFF_FFFE)
        {
            throw new ArgumentOutOfRangeException(nameof(startAfter), startAfter, "start after an NSID below FFFFFFFEh");
        }
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            return ReadNamespaceListLocked(cns, startAfter);
        }
    }

    /// <summary>A namespace ID list read page by page, checked (ascending, at most NN), with the admin lock held.</summary>
    private List<uint> ReadNamespaceListLocked(IdentifyCns cns, uint startAfter)
    {
        uint nn = Identity.NamespaceCount;
        var all = new List<uint>();
        uint after = startAfter;
        while (true)
        {
            var page = NamespaceIdList.Parse(IdentifyLocked(cns, after), after);
            // NN 0 is a controller that does not say: nothing to check against then.
            if (nn != 0 && page.Count > 0 && page[^1] > nn)
            {
                throw new DeviceProtocolViolationException(_device.Address, $"Identify CNS {(byte)cns:x2}h namespace list",
                    $"NSID {page[^1]}, but NN is {nn}");
            }
            all.AddRange(page);
            // A full page may have a continuation (§5.15.2.4); each page starts above the last NSID, which is at most NN,
            // so this ends after NN / 1024 + 1 pages.
            if (page.Count < NamespaceIdList.MaxEntries) { return all; }
            after = page[^1];
        }
    }

    private List<ushort> ReadControllerList(IdentifyCns cns, uint nsid)
    {
        var all = new List<ushort>();
        var data = new byte[ControllerList.Size];
        int from = 0;
        while (true)
        {
            ExecuteAdmin(NvmeCommand.Identify(cns, nsid, (ushort)from, default, default), data, NvmeDataDirection.FromDevice);
            var page = ControllerList.Parse(data);
            foreach (ushort id in page)
            {
                // The list holds identifiers from CNTID up, in increasing order (§5.15.2.5).
                if (id < from || (all.Count > 0 && id <= all[^1]))
                {
                    throw new DeviceProtocolViolationException(_device.Address, $"Identify CNS {(byte)cns:x2}h controller list",
                        $"controller {id} out of order (asked from {from})");
                }
                all.Add(id);
            }
            if (page.Length < ControllerList.MaxEntries || page[^1] == ushort.MaxValue) { return all; }
            from = page[^1] + 1;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: namespace {Nsid} created, {Blocks} blocks of LBA format {Format}")]
    private static partial void LogNamespaceCreated(ILogger logger, PciAddress device, uint nsid, ulong blocks, int format);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: namespace {Nsid} {What}")]
    private static partial void LogNamespaceChanged(ILogger logger, PciAddress device, string what, uint nsid);
}
