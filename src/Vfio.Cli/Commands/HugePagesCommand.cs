using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio hugepages status | reserve N [--size 2M|1G] [--node N]</c>: the hugepage pools DMA memory comes from.</summary>
internal static class HugePagesCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var status = new Command("status", "Show each hugepage pool (free/total per page size) and the hugetlbfs mount points");
        status.SetAction(parse => Status(context(parse)));

        var count = new Argument<int>("N") { Description = "The pool size to ask the kernel for, in pages" };
        count.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int n) && n < 0) { r.AddError("N must be 0 or more"); }
        });
        var size = Arguments.SizeOption("--size", "Page size: 2M or 1G on x86_64 (default: the kernel's default hugepage size)", "SIZE",
            Arguments.ParsePageSize, text => $"'{text}' is not a page size (expected e.g. 2M or 1G)");
        var node = new Option<int?>("--node")
        {
            Description = "Set this NUMA node's pool instead of the system-wide one (the node of the device the memory is for: 'vfio info')",
            HelpName = "NODE",
        };
        node.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int? n) && n is < 0) { r.AddError("--node must be 0 or more"); }
        });
        var reserve = new Command("reserve", "Set the pool of one page size to N pages (nr_hugepages), system-wide or on one NUMA node, and report what the kernel granted")
        {
            count, size, node,
        };
        reserve.SetAction(parse => Reserve(context(parse), parse.GetValue(count), parse.GetValue(size), parse.GetValue(node)));

        var command = new Command("hugepages", "Hugepage pools for DMA memory: status, reserve (no subcommand: status)")
        {
            status, reserve,
        };
        command.SetAction(parse => Status(context(parse)));
        return command;
    }

    private static int Status(CliContext ctx)
    {
        var pages = ctx.Host.HugePages;
        var pools = pages.GetPools();
        var mounts = pages.GetMounts();
        var json = new HugePagesJson(
            pages.DefaultPageSize(),
            [.. pools.Select(p => new HugePagePoolJson(p.PageSize, Arguments.FormatPageSize(p.PageSize), p.Total, p.Free,
                p.Reserved, p.Surplus, p.Available, [.. mounts.Where(m => m.PageSize == p.PageSize).Select(m => m.MountPoint)]))],
            [.. mounts.Select(m => new HugetlbfsMountJson(m.MountPoint, m.PageSize))]);
        if (ctx.Json)
        {
            ctx.WriteJson(json, CliJson.Output.HugePagesJson);
            return ExitCodes.Ok;
        }
        if (json.Pools.Count == 0)
        {
            ctx.Say("This kernel offers no hugepages (no /sys/kernel/mm/hugepages: built without CONFIG_HUGETLBFS?).");
            return ExitCodes.Ok;
        }

        var table = Tables.Create(null, "Size", "Total", "Free", "Reserved", "Surplus", "Available", "Mounted at");
        foreach (var p in json.Pools)
        {
            static string N(long n) => n.ToString(CultureInfo.InvariantCulture);
            var size = p.PageSize == json.DefaultPageSize ? $"{p.Size} (default)" : p.Size;
            table.AddRow(new Text(size), new Text(N(p.Total)), new Text(N(p.Free)), new Text(N(p.Reserved)),
                new Text(N(p.Surplus)), new Text(N(p.Available)), new Text(p.Mounts.Count == 0 ? "-" : string.Join(", ", p.Mounts)));
        }
        ctx.Console.Write(table);
        return ExitCodes.Ok;
    }

    private static int Reserve(CliContext ctx, int count, ulong? size, int? node)
    {
        var pages = ctx.Host.HugePages;
        ulong pageSize = size ?? pages.DefaultPageSize() ?? 2UL << 20;
        var result = node is { } n ? pages.Reserve(pageSize, count, n) : pages.Reserve(pageSize, count);
        var text = Arguments.FormatPageSize(pageSize);
        if (ctx.Json)
        {
            ctx.WriteJson(new HugePageReservationJson(pageSize, text, result.Requested, result.Granted, result.IsComplete, result.Node),
                CliJson.Output.HugePageReservationJson);
        }
        else
        {
            string where = result.Node is { } on ? string.Create(CultureInfo.InvariantCulture, $" on node {on}") : "";
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"{text} hugepages{where}: asked for {result.Requested}, the kernel granted {result.Granted}."));
        }
        if (result.IsComplete) { return ExitCodes.Ok; }

        ctx.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"vfio: the kernel granted only {result.Granted} of {result.Requested} {text} hugepages: memory is short or " +
            $"too fragmented. Free memory (or drop caches: 'echo 3 > /proc/sys/vm/drop_caches') and try again, or reserve " +
            $"them at boot (kernel command line 'hugepagesz={text} hugepages={result.Requested}'), which 1G pages usually need."));
        return ExitCodes.DeviceOrHost;
    }
}
