using System.CommandLine;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio bind</c> and <c>vfio unbind</c>: move devices between kernel drivers and vfio-pci.</summary>
internal static class BindCommands
{
    public static Command CreateBind(Func<ParseResult, CliContext> context)
    {
        var bdfs = Arguments.Bdfs();
        var force = new Option<bool>("--force")
        {
            Description = "Take the devices even when the host uses them (mounted filesystems, swap, dm/md holders, open " +
                          "files, an interface with addresses or the default route, the boot device): data loss, lost connections",
        };
        var persist = Persist("Also write a udev rule so the binding survives a reboot (driverctl's way: driver_override at device add)");
        var command = new Command("bind",
            "Bind devices to vfio-pci (via driver_override), after checking that each one's IOMMU group can be handed out " +
            "and that the host does not use it")
        {
            bdfs, force, persist,
        };
        command.SetAction(parse => Bind(context(parse), parse.GetRequiredValue(bdfs), parse.GetValue(force), parse.GetValue(persist)));
        return command;
    }

    private static Option<bool> Persist(string description) => new("--persist") { Description = description };

    public static Command CreateUnbind(Func<ParseResult, CliContext> context)
    {
        var bdfs = Arguments.Bdfs();
        var driver = new Option<string?>("--driver")
        {
            Description = "Hand the devices to this kernel driver (e.g. nvme) instead of leaving them without one",
            HelpName = "NAME",
        };
        driver.Validators.Add(result =>
        {
            var name = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
            {
                result.AddError($"'{name}' is not a driver name (a folder of /sys/bus/pci/drivers, e.g. nvme)");
            }
        });
        var persist = Persist("Also remove the udev rule 'vfio bind --persist' wrote, so the binding no longer returns at boot");
        var command = new Command("unbind",
            "Unbind devices from their driver and clear driver_override; with --driver, bind them to that driver")
        {
            bdfs, driver, persist,
        };
        command.SetAction(parse => Unbind(context(parse), parse.GetRequiredValue(bdfs), parse.GetValue(driver), parse.GetValue(persist)));
        return command;
    }

    private static int Bind(CliContext ctx, PciAddress[] arguments, bool force, bool persist)
    {
        var host = ctx.Host;
        var targets = arguments.Distinct().ToList();
        // Every check first, so that a refusal leaves every device as it was.
        var before = targets.Select(host.GetDevice).ToList();
        var uses = new Dictionary<PciAddress, IReadOnlyList<DeviceUse>>();
        foreach (var device in before)
        {
            CheckViable(host, device, targets);
            // Only a kernel driver's device can be in use by the host; BindToVfio checks again, this is for all at once.
            uses[device.Address] = device.Driver is null or PciHost.VfioPciDriver ? [] : host.FindUses(device.Address);
            if (!force && uses[device.Address].Count > 0)
            {
                throw new DeviceInUseException(device.Address, device.Driver!, uses[device.Address]);
            }
        }

        var persistence = new BindPersistence(ctx.Environment.PersistRoot);
        var results = new List<BindingJson>();
        foreach (var device in before)
        {
            foreach (var use in uses[device.Address])
            {
                ctx.Warn($"{device.Address}: --force: taking it from {device.Driver} although {use}");
            }
            host.BindToVfio(device.Address, force);
            var after = host.GetDevice(device.Address);
            var rule = persist ? persistence.Persist(device.Address) : null;
            var result = Result(host, after, device.Driver == PciHost.VfioPciDriver ? "unchanged" : "bound", device.Driver) with
            {
                PersistRule = rule,
                Forced = [.. uses[device.Address].Select(u => u.ToString())],
            };
            results.Add(result);
            if (!ctx.Json)
            {
                var what = result.Action == "unchanged"
                    ? "already bound to vfio-pci"
                    : $"bound to vfio-pci{(device.Driver is { } was ? $" (was {was})" : "")}";
                var where = result.GroupDevicePath is { } path ? $"; group {result.IommuGroup}, {path}" : "";
                ctx.Say($"{device.Address}: {what}{where}");
                if (rule is not null)
                {
                    ctx.Say($"{device.Address}: persisted in {rule} (vfio-pci takes it at boot; 'vfio unbind --persist " +
                            $"{device.Address}' undoes it)");
                }
            }
            if (after.IsNoIommu)
            {
                ctx.Warn($"{device.Address} is in No-IOMMU group {after.IommuGroup}: nothing isolates its DMA; " +
                         "opening it needs --unsafe-noiommu and taints the kernel.");
            }
        }
        if (ctx.Json) { ctx.WriteJson(new BindingListJson(results), CliJson.Output.BindingListJson); }
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Refuses to bind a device whose IOMMU group VFIO would not hand out afterwards: another device of the group is
    /// bound to a host driver and is not among those being bound. (The library's bind would succeed, but the device
    /// could not be opened, and the reason would surface only then.)
    /// </summary>
    private static void CheckViable(PciHost host, PciDeviceInfo device, IReadOnlyList<PciAddress> targets)
    {
        // A device without a group gets a single-device No-IOMMU group from vfio-pci, or is refused by BindToVfio.
        if (device.IommuGroup is null) { return; }
        var group = host.GetIommuGroup(device.Address);
        var blocking = group.Devices
            .Where(m => m.Address != device.Address && !targets.Contains(m.Address) && !m.AllowsViability)
            .ToList();
        if (blocking.Count == 0) { return; }

        var others = string.Join(", ", blocking.Select(m => $"{m.Address} (bound to {m.Driver})"));
        var members = string.Join(", ", group.Devices.Select(m => $"{m.Address} ({m.Driver ?? "no driver"})"));
        var together = string.Join(' ', targets.Concat(blocking.Select(m => m.Address)).Distinct());
        throw new CliException(
            $"{device.Address}: refusing to bind: IOMMU group {group.Name} is not viable, it also holds {others}. " +
            $"VFIO hands out a group only whole: every device in it must be bound to vfio-pci, pci-stub or pcieport, or " +
            $"to no driver. The group holds: {members}. Bind them together ('vfio bind {together}') or unbind the " +
            $"others first ('vfio unbind {string.Join(' ', blocking.Select(m => m.Address))}'). Nothing was changed.",
            ExitCodes.DeviceOrHost, "GroupNotViable", device.Address);
    }

    private static int Unbind(CliContext ctx, PciAddress[] arguments, string? driver, bool persist)
    {
        var host = ctx.Host;
        var targets = arguments.Distinct().ToList();
        var before = targets.Select(host.GetDevice).ToList();
        var persistence = new BindPersistence(ctx.Environment.PersistRoot);

        var results = new List<BindingJson>();
        foreach (var device in before)
        {
            // The rule goes first: were the unbind to fail, the next boot must not take the device again either.
            string? removed = persist && persistence.Remove(device.Address) ? persistence.RulePath(device.Address) : null;
            if (driver is not null) { host.BindToDriver(device.Address, driver); }
            else { host.Unbind(device.Address); }
            var after = host.GetDevice(device.Address);
            var action = after.Driver == device.Driver ? "unchanged" : after.Driver is null ? "unbound" : "bound";
            results.Add(Result(host, after, action, device.Driver) with { PersistRule = removed });
            if (!ctx.Json)
            {
                ctx.Say(action switch
                {
                    "unchanged" when after.Driver is null => $"{device.Address}: had no driver; unchanged",
                    "unchanged" => $"{device.Address}: already bound to {after.Driver}",
                    "unbound" => $"{device.Address}: unbound from {device.Driver}",
                    _ => $"{device.Address}: bound to {after.Driver}{(device.Driver is { } was ? $" (was {was})" : "")}",
                });
                if (persist)
                {
                    ctx.Say(removed is null
                        ? $"{device.Address}: no persisted binding to remove ({persistence.RulePath(device.Address)})"
                        : $"{device.Address}: removed {removed}; the binding no longer returns at boot");
                }
            }
        }
        if (ctx.Json)
        {
            ctx.WriteJson(new BindingListJson(results), CliJson.Output.BindingListJson);
        }
        else if (driver is null && results.Any(r => r.Action == "unbound"))
        {
            ctx.Say("To hand a device to a kernel driver: 'vfio unbind BDF --driver NAME' (e.g. nvme), " +
                    "or let the kernel pick one: 'echo BDF > /sys/bus/pci/drivers_probe'.");
        }
        return ExitCodes.Ok;
    }

    private static BindingJson Result(PciHost host, PciDeviceInfo after, string action, string? previous)
    {
        string? path = null;
        if (after.IommuGroup is not null)
        {
            try { path = host.GetIommuGroup(after.Address).DevicePath; }
            catch (VfioException) { path = null; }
        }
        return new BindingJson(after.Address.ToString(), action, previous, after.Driver, after.IommuGroup, after.IsNoIommu, path);
    }
}
