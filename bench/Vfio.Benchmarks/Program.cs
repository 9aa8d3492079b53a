using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Vfio.Benchmarks;
using Vfio.Benchmarks.Harness;

// ./run bench micro runs this with --filter and --artifacts. The benchmarks run in this process (in-process
// toolchain): BenchmarkDotNet then builds nothing more on a shared 2-core machine, and the ledger the cleanups fill
// is here to check afterwards. Five measured iterations of half a second keep the whole run to a few minutes.
var job = Job.ShortRun
    .WithIterationCount(5)
    .WithToolchain(InProcessEmitToolchain.Instance)
    .WithId("micro");
var config = DefaultConfig.Instance
    .AddJob(job.AsDefault())
    .AddExporter(JsonExporter.Full);

var summaries = BenchmarkSwitcher.FromAssembly(typeof(NvmeReadBenchmarks).Assembly).Run(args, config);

var problems = new List<string>();
int cases = 0;
foreach (var summary in summaries)
{
    if (summary.HasCriticalValidationErrors) { problems.Add($"{summary.Title}: critical validation errors"); }
    foreach (var report in summary.Reports)
    {
        cases++;
        string name = report.BenchmarkCase.DisplayInfo;
        if (!report.Success) { problems.Add($"{name}: failed"); }
        else if (report.ResultStatistics is not { N: > 0, Mean: > 0 }) { problems.Add($"{name}: no measurement"); }
    }
}
if (cases == 0) { problems.Add("no benchmark ran (does --filter match any?)"); }
problems.AddRange(Ledger.Problems());
foreach (var p in problems) { Console.Error.WriteLine($"micro: {p}"); }
return problems.Count == 0 ? 0 : 1;
